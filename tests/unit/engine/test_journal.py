"""The event journal: everything on disk, orders before anyone acts on them, crash-safe."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap

import structlog
from prometheus_client import CollectorRegistry

from engine.bus import EventBus
from engine.cli import main as cli_main
from engine.clock import SimulatedClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.events import OrderFilled, OrderRequest
from engine.journal import Journal, JournalConfig, JournalReader
from tests import factories


def order(n: int) -> OrderRequest:
    """The ``n``-th buy, made on bar ``n``."""
    return factories.order(
        "BUY", 10**6 * n, ts=n, order_id=f"o-{n}", strategy_id="ml", correlation_id=f"bar-{n}"
    )


def fill(n: int) -> OrderFilled:
    """The fill of :func:`order` ``n``."""
    return factories.fill("BUY", 10**6 * n, 10**15 * n, 1000.0, ts=n, order_id=f"o-{n}")


def make_journal(tmp_path, **settings) -> tuple[EventBus, Journal]:
    bus = EventBus()
    ctx = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    settings.setdefault("path", str(tmp_path / "j.sqlite"))
    journal = Journal("journal", JournalConfig(**settings), ctx)
    return bus, journal


async def test_every_event_is_journalled_in_order_and_reads_back_as_itself(tmp_path):
    bus, journal = make_journal(tmp_path)
    await journal.start()
    published = [factories.heartbeat(i) for i in range(100)]
    published.append(order(1))
    for event in published:
        bus.publish_nowait(event)
    await journal.stop()
    reader = JournalReader.open(tmp_path / "j.sqlite")
    rows = list(reader.rows(types=("Heartbeat", "OrderRequest")))
    assert [r.event() for r in rows] == published
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert {r.run_id for r in rows} == {journal.run_id}


async def test_an_order_is_on_disk_before_the_next_subscriber_sees_it(tmp_path):
    bus, journal = make_journal(tmp_path, commit_every=10_000)
    await journal.start()
    seen_on_disk: list[bool] = []

    def executor(event: OrderRequest) -> None:
        other = sqlite3.connect(tmp_path / "j.sqlite")  # another connection: committed rows only
        found = other.execute(
            "SELECT COUNT(*) FROM events WHERE type = 'OrderRequest' AND correlation_id = ?",
            (event.correlation_id,),
        ).fetchone()[0]
        other.close()
        seen_on_disk.append(found == 1)

    bus.subscribe(OrderRequest, executor)
    for n in range(1, 6):
        bus.publish_nowait(factories.heartbeat(n))
        bus.publish_nowait(order(n))
    await journal.stop()
    assert seen_on_disk == [True] * 5


def test_events_committed_before_a_kill_9_survive_it(tmp_path):
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from prometheus_client import CollectorRegistry
        from engine.bus import EventBus
        from engine.clock import SimulatedClock
        from engine.config import Secrets
        from engine.events import Heartbeat, OrderRequest
        from engine.journal import Journal, JournalConfig
        from engine.component import ComponentContext
        bus = EventBus()
        ctx = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
        Journal("journal", JournalConfig(path={str(path)!r}, commit_every=100_000), ctx)
        for i in range(500):
            bus.publish_nowait(Heartbeat(ts_event=i, ts_init=i, count=i))
        bus.publish_nowait(OrderRequest(ts_event=1, ts_init=1, order_id="o-1",
            strategy_id="ml", symbol="WETH/USDC", side="BUY", amount_in=1))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    reader = JournalReader.open(path)
    assert reader.count() == 501  # the order's commit took every event before it along
    assert [r.event().order_id for r in reader.rows(types=("OrderRequest",))] == ["o-1"]


async def test_last_row_of_a_type_is_the_newest_journalled(tmp_path):
    bus, journal = make_journal(tmp_path)
    await journal.start()
    for n in (1, 2, 3):
        bus.publish_nowait(order(n))
    filled = fill(2)
    bus.publish_nowait(filled)
    await journal.stop()
    reader = JournalReader.open(tmp_path / "j.sqlite")
    assert reader.last("OrderFilled").event() == filled
    assert reader.last("OrderRequest").event().order_id == "o-3"


async def test_journal_cli_tails_and_exports(tmp_path, capsys):
    bus, journal = make_journal(tmp_path)
    await journal.start()
    for n in range(1, 31):
        bus.publish_nowait(order(n))
    await journal.stop()
    path = str(tmp_path / "j.sqlite")
    assert cli_main(["journal", "tail", "--path", path, "-n", "3", "--type", "OrderRequest"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"id"')]
    assert [json.loads(line)["order_id"] for line in lines] == ["o-28", "o-29", "o-30"]
    out = tmp_path / "export.jsonl"
    assert cli_main(["journal", "export", "--path", path, "--out", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for e in exported if e["type"] == "OrderRequest") == 30
    assert cli_main(["journal", "tail", "--path", str(tmp_path / "none.sqlite")]) == 2


async def test_a_resumed_run_appends_only_what_comes_after_the_journalled_events(tmp_path):
    first_bus, first = make_journal(tmp_path)
    await first.start()
    for n in (1, 2, 3):
        first_bus.publish_nowait(order(n))
    first_bus.publish_nowait(factories.heartbeat(1))
    await first.stop()

    # The restarted engine re-produces orders 1-3 (a deterministic catch-up), then goes on.
    bus, journal = make_journal(tmp_path)
    await journal.start()
    for n in (1, 2, 3, 4, 5):
        bus.publish_nowait(order(n))
    bus.publish_nowait(factories.heartbeat(1, ts=2))
    await journal.stop()
    assert journal.skipped == 3
    reader = JournalReader.open(tmp_path / "j.sqlite")
    assert [r.event().order_id for r in reader.rows(types=("OrderRequest",))] == [
        "o-1", "o-2", "o-3", "o-4", "o-5",
    ]  # fmt: skip
    assert len(list(reader.rows(types=("Heartbeat",)))) == 2  # per-run events stay


async def test_a_resumed_run_that_diverges_appends_from_the_divergence(tmp_path):
    first_bus, first = make_journal(tmp_path)
    await first.start()
    for n in (1, 2):
        first_bus.publish_nowait(order(n))
    await first.stop()
    bus, journal = make_journal(tmp_path)
    await journal.start()
    for n in (1, 7):  # order 7 where order 2 was expected: the data or model changed
        bus.publish_nowait(order(n))
    await journal.stop()
    reader = JournalReader.open(tmp_path / "j.sqlite")
    assert [r.event().order_id for r in reader.rows(types=("OrderRequest",))] == [
        "o-1", "o-2", "o-7",
    ]  # fmt: skip


async def test_a_re_published_event_waits_for_its_turn_in_the_catch_up(tmp_path):
    """An executor's journalled fill goes back where the journal has it, however late
    the original fill came: here two orders after its request."""
    first_bus, first = make_journal(tmp_path)
    await first.start()
    for event in (order(1), order(2), order(3), fill(1)):
        first_bus.publish_nowait(event)
    await first.stop()

    bus, journal = make_journal(tmp_path)
    await journal.start()
    bus.publish_nowait(order(1))
    replayed = asyncio.ensure_future(journal.turn_of(fill(1)))
    await asyncio.sleep(0.01)
    assert not replayed.done()  # orders 2 and 3 come first
    bus.publish_nowait(order(2))
    await asyncio.sleep(0.01)
    assert not replayed.done()
    bus.publish_nowait(order(3))
    await asyncio.wait_for(replayed, 1)
    bus.publish_nowait(fill(1))
    assert journal.caught_up.is_set()
    assert journal.skipped == 4  # the exact journal re-produced: nothing appended
    await journal.stop()
    assert len(JournalReader.open(tmp_path / "j.sqlite").trading_keys()) == 4


async def test_waiting_for_a_turn_ends_when_the_catch_up_diverges(tmp_path):
    first_bus, first = make_journal(tmp_path)
    await first.start()
    for event in (order(1), fill(1)):
        first_bus.publish_nowait(event)
    await first.stop()
    bus, journal = make_journal(tmp_path)
    await journal.start()
    waiting = asyncio.ensure_future(journal.turn_of(fill(5)))
    bus.publish_nowait(order(7))  # not what the journal holds: diverged
    await asyncio.wait_for(waiting, 1)
    await journal.stop()


def test_a_journal_that_cannot_write_withholds_faults_and_writes_again_when_it_can(tmp_path):
    """Under a file-size limit (as on a full disk) an order's commit fails: the order and
    every later event reach no one, the journal is FAULTED; with the limit lifted it
    writes the lost batch and goes on, holding exactly what the others saw."""
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent(
        f"""
        import asyncio, json, os, resource
        from prometheus_client import CollectorRegistry
        from engine.bus import EventBus
        from engine.clock import SimulatedClock
        from engine.component import ComponentContext
        from engine.config import Secrets
        from engine.events import Event, Heartbeat, OrderRequest
        from engine.journal import Journal, JournalConfig

        async def main():
            bus = EventBus()
            ctx = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
            settings = JournalConfig(path={str(path)!r}, commit_every=10_000,
                                     commit_interval_seconds=3600)
            journal = Journal("journal", settings, ctx)
            seen, states = [], []
            bus.subscribe(Event, lambda e: seen.append(e.seq), name="executor")
            await journal.start()
            for i in range(5):  # delivered, not committed yet
                bus.publish_nowait(Heartbeat(ts_event=i, ts_init=i, count=i))
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            wal = os.path.getsize({str(path)!r} + "-wal")
            resource.setrlimit(resource.RLIMIT_FSIZE, (wal, hard))
            bus.publish_nowait(OrderRequest(ts_event=9, ts_init=9, order_id="o-1",
                strategy_id="ml", symbol="WETH/USDC", side="BUY", amount_in=1))
            bus.publish_nowait(Heartbeat(ts_event=10, ts_init=10, count=10))
            states.append(str(journal.state))
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
            bus.publish_nowait(Heartbeat(ts_event=11, ts_init=11, count=11))
            states.append(str(journal.state))
            await journal.stop()
            print(json.dumps({{"seen": seen, "states": states}}))

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["states"] == ["FAULTED", "RUNNING"]
    rows = [(r.seq, r.type) for r in JournalReader.open(path).rows()]
    # 1-2 starting, 3-7 heartbeats (lost with the failed commit, written again), 8 the
    # order, 9 the failure notice, 10 FAULTED, 11 a heartbeat, 12 the heartbeat that
    # found the disk writable, 13 RUNNING again, 14 the recovery notice, 15-16 stopping.
    assert rows == [
        *[(1, "ComponentStateChanged"), (2, "ComponentStateChanged")],
        *[(seq, "Heartbeat") for seq in range(3, 8)],
        *[(12, "Heartbeat"), (13, "ComponentStateChanged"), (14, "SubscriberRecovered")],
        (15, "ComponentStateChanged"),
    ]
    # The order (8), FAULTED (10) and heartbeat 11 reached no one; the notice (9) did.
    assert report["seen"] == [*range(1, 8), 9, *range(12, 17)]


async def test_a_missing_or_empty_journal_with_resume_says_it_starts_fresh(tmp_path):
    (tmp_path / "empty.sqlite").touch()
    with structlog.testing.capture_logs() as logs:
        for name in ("missing.sqlite", "empty.sqlite"):
            make_journal(tmp_path, path=str(tmp_path / name))[1].conn.close()
    fresh = [(e["path"], e["reason"]) for e in logs if e["event"] == "journal.starting_fresh"]
    assert fresh == [
        (str(tmp_path / "missing.sqlite"), "no journal file: starting a new one"),
        (str(tmp_path / "empty.sqlite"), "the journal file is empty (0 bytes): starting fresh"),
    ]
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "journal.starting_fresh")
