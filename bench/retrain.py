"""Retraining in a running engine: what renewing the model costs the trading loop.

A whole paper engine as the daemon runs it (journal, replay, `stationary` features, a
strategy host with one ML strategy, the retrain supervisor, the prediction API,
portfolio, paper executor, a risk manager whose limits never stop the orders), with a
LightGBM champion trained first (in another process). Each measurement runs in a fresh
spawned process:

1. **Tick-to-order while a challenger trains**, live clock, on synthetic momentum candles
   (bench/retrain_setup.py) replayed at ``--rate`` bars a second: ``--idle`` seconds
   idle, then an operator retraining (AutoGluon's ``medium_quality`` zoo,
   ``--time-limit`` s, ``num_cpus`` 1, in the supervisor's spawned process; the gate is
   set never to promote, so one champion trades throughout), ``--rounds`` times, then
   idle again. Each order is labelled by the supervisor's phase when its bar was
   published: idle, training (RetrainStarted to ChallengerRegistered: spawn, fit, and
   loading the challenger in the engine process) or shadow. Tick-to-order as
   bench/loop.py measures it (bar published → its OrderRequest, by correlation id), and
   due-to-order, which adds how late the bar was published against the replay's
   schedule (a loop blocked for 100 ms delays the next bar's publication, which
   tick-to-order does not see). Goal: p99 while training within 2x idle.
2. **The policy replay**, simulated clock, on the bundled BTC/USDT hourly candles from
   2021-01-05 (champion trained on those before): a retraining every Monday at 02:00
   (LightGBM 50 rounds, the default 8760-bar window), 48 shadow bars, a lenient gate
   (McNemar, alpha 0.45, so that some challengers are promoted), a 48-bar canary, until
   ``--cycles`` cycles have ended. Bars/s with the wall time the clock was held for
   training (RetrainStarted → ChallengerRegistered or RetrainFailed, stamped by bus
   subscribers) and the RSS readings subtracted, against the same bars replayed without
   a supervisor (three times; their median), in the same run; and bars/s by the
   supervisor's phase.
3. **RSS** of that engine's process (psutil, after ``gc.collect()``) at the first
   RetrainStarted and after each cycle (supervisor back to idle). Goal: < 5% growth
   after 10 cycles.

    .venv/bin/python bench/retrain.py [--rate 50] [--idle 30] [--rounds 2] \\
        [--time-limit 30] [--cycles 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psutil
from machine import describe_machine
from retrain_setup import FAST, HOURLY, MODEL, SYNTHETIC_START, engine_config, momentum_candles

from engine.app import Engine
from engine.candles import write_candles
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import (
    Bar,
    ChallengerRegistered,
    ModelRolledBack,
    OrderRequest,
    PromotionDecided,
    RetrainFailed,
    RetrainStarted,
)
from engine.logs import configure_logging
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.supervisor import Phase
from ml.training import TrainSettings

T = TypeVar("T")
MB = 1024 * 1024
WARMUP_SECONDS = 5.0
REFERENCE_RUNS = 3  # the reference replay takes seconds: its median steadies the ratio
CHAMPION_BARS = 1400  # synthetic bars the live part's champion is trained on
LIVE_START = (SYNTHETIC_START + pd.Timedelta(hours=CHAMPION_BARS)).isoformat()
POLICY_START = "2021-01-05T00:00:00Z"  # a Tuesday: the first retraining (Mondays) 146 bars in


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new spawned interpreter: no memory or threads of another part."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MB


def train_champion(data: Path, models: Path, until: str) -> str:
    """The champion: LightGBM on the candles before ``until``; its model type."""
    settings = TrainSettings(feature_set="stationary", time_limit=20, hyperparameters=FAST)
    trained = train_from_file(data, settings, ModelRegistry(models), MODEL, until=until)
    return str(trained.model.metadata["metrics"]["best_model"])


# -- 1. tick-to-order while a challenger trains (live clock) ------------------------------


def live_latency(
    tmp: Path, data: Path, models: Path, rate: float, idle: float, rounds: int, limit: float
) -> dict[str, Any]:
    configure_logging("warning")
    supervisor = {
        "window_bars": 2000,
        "time_limit": limit,
        "presets": "medium_quality",
        "num_cpus": 1,
        "triggers": {"schedule": None, "max_model_age_days": None, "min_accuracy": None},
        "cooldown_hours": 0,
        "gate": {"shadow_bars": 50, "alpha": 1e-9},  # never promotes: one champion throughout
        "canary": None,
    }
    config = engine_config(
        tmp,
        data,
        models,
        start=LIVE_START,
        clock="live",
        supervisor=supervisor,
        replay={"speed": rate * 3600},
    )
    return asyncio.run(_live_latency(config, rate, idle, rounds))


async def _live_latency(
    config: dict[str, Any], rate: float, idle: float, rounds: int
) -> dict[str, Any]:
    engine = Engine(parse_engine_config(config), Secrets())
    sup: Any = engine.graph.get("supervisor")
    # bar id → (published, perf ns; published less its place on the replay's schedule,
    # wall ns; label). The bar published soonest after its due time sets the schedule's
    # origin: due-to-order = tick-to-order + how late the bar was published.
    marks: dict[str, tuple[int, int, str]] = {}
    orders: list[tuple[str, int]] = []  # (bar id, perf ns)
    warm = [False]
    trainings: list[float] = []
    failures: list[str] = []
    challengers: list[str] = []
    ns_per_bar = 1e9 / rate

    def on_bar(bar: Bar) -> None:
        now, wall = time.perf_counter_ns(), time.time_ns()
        phase = sup.phase
        label = str(phase) if phase is not Phase.IDLE else "idle" if warm[0] else "warm-up"
        scheduled = round(bar.ts_event / 3_600e9 * ns_per_bar)  # up to a constant
        marks[bar.correlation_id] = (now, wall - scheduled, label)

    def on_order(order: OrderRequest) -> None:
        orders.append((order.correlation_id, time.perf_counter_ns()))

    trained, decided = asyncio.Event(), asyncio.Event()
    engine.bus.subscribe(ChallengerRegistered, lambda _: trained.set(), name="bench.trained")
    engine.bus.subscribe(
        ChallengerRegistered,
        lambda _: challengers.append(sup.shadow_model.model_name),
        name="bench.challenger",
    )
    engine.bus.subscribe(RetrainFailed, lambda e: failures.append(e.reason), name="bench.failed")
    engine.bus.subscribe(RetrainFailed, lambda _: trained.set(), name="bench.ended")
    engine.bus.subscribe(PromotionDecided, lambda _: decided.set(), name="bench.decided")

    # Stamped by the first Bar subscriber, before the journal and the features.
    engine.bus.subscribe(Bar, on_bar, name="bench.bar")
    engine.bus.subscribe(OrderRequest, on_order, name="bench.order")
    await engine.start()
    replay: Any = engine.graph.get("market")
    try:
        await asyncio.sleep(WARMUP_SECONDS)
        warm[0] = True
        for _ in range(rounds):
            await asyncio.sleep(idle)
            trained.clear()
            decided.clear()
            started = time.perf_counter()
            if not (await sup.operator_retrain())["started"]:
                raise RuntimeError(f"the retraining did not start: {sup.status()}")
            await asyncio.wait_for(trained.wait(), 600)
            if failures:
                raise RuntimeError(f"the retraining failed: {failures[-1]}")
            trainings.append(time.perf_counter() - started)
            await asyncio.wait_for(decided.wait(), 600)  # rejected: back to idle
        await asyncio.sleep(idle)
        if replay.finished.is_set():
            raise RuntimeError("the replay ran out of bars: make the data longer")
    finally:
        await engine.stop()
    origin = min(offset for _, offset, _ in marks.values())
    samples: dict[str, list[tuple[int, int]]] = {}  # label → (tick-, due-to-order ns)
    for bar_id, at in orders:
        published, offset, label = marks[bar_id]
        tick = at - published
        samples.setdefault(label, []).append((tick, tick + offset - origin))
    return {"samples": samples, "trainings": trainings, "challengers": challengers}


# -- 2 and 3. the policy replay, its speed and its memory (simulated clock) ---------------


def policy_replay(
    tmp: Path, data: Path, models: Path, cycles: int, reference: dict[str, Any] | None
) -> dict[str, Any]:
    """With a supervisor until ``cycles`` retrain cycles have ended; or, given the
    supervised run's result as ``reference``, without one over the same bars."""
    configure_logging("warning")
    supervisor = {
        "time_limit": 20,
        "hyperparameters": FAST,
        "triggers": {"schedule": "0 2 * * 1", "max_model_age_days": None, "min_accuracy": None},
        # Lenient on purpose: about half the challengers pass, so canaries and rollbacks run.
        "gate": {"shadow_bars": 48, "tests": ["mcnemar"], "alpha": 0.45},
        "canary": {"initial_fraction": 0.25, "ramp_bars": 48},
    }
    config = engine_config(
        tmp,
        data,
        models,
        start=POLICY_START,
        clock="simulated",
        supervisor=supervisor if reference is None else None,
        replay={} if reference is None else {"end": reference["last_bar_open"]},
    )
    rss_at = None if reference is None else reference["rss"][0][0]
    return asyncio.run(_policy_replay(config, cycles, rss_at))


async def _policy_replay(config: dict[str, Any], cycles: int, rss_at: int | None) -> dict[str, Any]:
    engine = Engine(parse_engine_config(config), Secrets())
    replay: Any = engine.graph.get("market")
    sup: Any = engine.graph.get("supervisor") if rss_at is None else None
    held: list[list[float]] = []  # [start, end] wall seconds of each hold
    rss: list[tuple[int, float]] = []  # (bars published, MB)
    outcomes: dict[str, int] = {}
    measuring = [0.0]  # wall seconds spent reading RSS, subtracted with the holds
    busy = [False]
    last_close = [0]
    by_phase: dict[str, list[float]] = {}  # phase → [wall seconds, bars]
    previous: list[Any] = [0.0, "", 0, 0.0]  # at the last bar: time, phase, holds, RSS reads
    done = asyncio.Event()

    def read_rss() -> None:
        started = time.perf_counter()
        rss.append((replay.published, rss_mb()))
        measuring[0] += time.perf_counter() - started

    def on_lifecycle(event: Any) -> None:
        now = time.perf_counter()
        kind = type(event).__name__
        if isinstance(event, PromotionDecided):
            kind = "promoted" if event.promoted else "rejected"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if isinstance(event, RetrainStarted):
            held.append([now, 0.0])
            if not rss:  # within the hold, so subtracted with it
                rss.append((replay.published, rss_mb()))
        elif isinstance(event, ChallengerRegistered | RetrainFailed):
            held[-1][1] = now

    def after_supervisor(bar: Bar) -> None:
        last_close[0] = bar.ts_event
        if sup is None:
            if replay.published == rss_at:
                read_rss()
            return
        # From here to the next bar: this bar's features, predictions and orders, in the
        # phase the supervisor is now in (intervals with a hold or an RSS read left out).
        now, phase = time.perf_counter(), str(sup.phase)
        if previous[0] and previous[2:] == [len(held), measuring[0]]:
            spent = by_phase.setdefault(previous[1], [0.0, 0])
            spent[0] += now - previous[0]
            spent[1] += 1
        if sup.phase is not Phase.IDLE:
            busy[0] = True
        elif busy[0]:  # a cycle ended at this bar
            busy[0] = False
            read_rss()
            if len(rss) > cycles:
                done.set()
        previous[:] = [time.perf_counter(), phase, len(held), measuring[0]]

    for kind in (RetrainStarted, ChallengerRegistered, RetrainFailed, PromotionDecided,
                 ModelRolledBack):  # fmt: skip
        engine.bus.subscribe(kind, on_lifecycle, name=f"bench.{kind.__name__}")
    await engine.start()
    engine.bus.subscribe(Bar, after_supervisor, name="bench.after_supervisor")
    started = time.perf_counter()
    waits = [asyncio.ensure_future(replay.finished.wait()), asyncio.ensure_future(done.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    now = time.perf_counter()
    elapsed, bars, last = now - started, replay.published, last_close[0]
    holds = sum((end or now) - start for start, end in held)
    if sup is None:
        read_rss()
    elif not done.is_set():
        raise RuntimeError(f"the replay ended after {len(rss) - 1} of {cycles} cycles")
    await engine.stop()
    last_open = pd.Timestamp(last - 3_600_000_000_000, unit="ns", tz="UTC")
    return {
        "bars": bars,
        "elapsed": elapsed,
        "held": holds,
        "measuring": measuring[0],
        "retrains": len(held),
        "rss": rss,
        "outcomes": outcomes,
        "by_phase": by_phase,
        "last_bar_open": last_open.isoformat(),
    }


# -- the run ------------------------------------------------------------------------------


def percentiles(values_ns: list[int]) -> tuple[float, float]:
    ms = np.array(values_ns) / 1e6
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def print_latency(live: dict[str, Any], args: argparse.Namespace) -> None:
    samples = live["samples"]
    trainings = ", ".join(f"{s:.1f} s" for s in live["trainings"])
    print(
        f"# 1. live clock, {args.rate:g} bars/s; {args.rounds} operator retraining(s) "
        f"(medium_quality, {args.time_limit:g} s budget, num_cpus 1) took {trainings} "
        f"(spawn, fit, load: {', '.join(live['challengers'])}); {args.idle:g} s idle before, "
        "between and after"
    )
    print()
    print("| supervisor phase at the bar | orders | tick-to-order p50 | p99 | "
          "due-to-order p50 | p99 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rows = {"idle": "idle", "training": "training a challenger", "shadow": "challenger in shadow"}
    p99: dict[str, tuple[float, float]] = {}
    for label, title in rows.items():
        if label not in samples:
            continue
        tick = percentiles([t for t, _ in samples[label]])
        due = percentiles([d for _, d in samples[label]])
        p99[label] = (tick[1], due[1])
        print(
            f"| {title} | {len(samples[label]):,} | {tick[0]:.2f} ms | {tick[1]:.2f} ms | "
            f"{due[0]:.2f} ms | {due[1]:.2f} ms |"
        )
    if "idle" in p99 and "training" in p99:
        tick_ratio = p99["training"][0] / p99["idle"][0]
        due_ratio = p99["training"][1] / p99["idle"][1]
        print()
        print(
            f"p99 training / idle: tick-to-order {tick_ratio:.2f}x, due-to-order "
            f"{due_ratio:.2f}x (goal <= 2x)"
        )


def print_policy(supervised: dict[str, Any], references: list[dict[str, Any]]) -> None:
    out = supervised["outcomes"]
    print(
        f"# 2. policy replay, simulated clock: {supervised['retrains']} retrainings, "
        f"{out.get('promoted', 0)} promoted, {out.get('rejected', 0)} rejected, "
        f"{out.get('ModelRolledBack', 0)} rolled back, {out.get('RetrainFailed', 0)} failed"
    )
    print()
    print("| replay | bars | wall s | clock held s | RSS reads s | bars/s excl. held | "
          "vs reference |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rates = [run["bars"] / (run["elapsed"] - run["held"] - run["measuring"])
             for run in (*references, supervised)]  # fmt: skip
    base = float(np.median(rates[:-1]))
    each = ", ".join(f"{rate:,.0f}" for rate in rates[:-1])
    for title, run, rate in (
        (f"without supervisor (reference; median of {each})", references[0], base),
        ("with the supervisor", supervised, rates[-1]),
    ):
        print(
            f"| {title} | {run['bars']:,} | {run['elapsed']:.1f} | {run['held']:.1f} | "
            f"{run['measuring']:.2f} | {rate:,.0f} | {rate / base:.2f}x |"
        )
    titles = {"idle": "idle (champion only)", "shadow": "challenger in shadow",
              "canary": "canary (previous champion in shadow)"}  # fmt: skip
    for phase, (seconds, bars) in supervised["by_phase"].items():
        rate = bars / seconds
        print(
            f"| … of which bars while {titles[phase]} | {bars:,} | {seconds:.1f} | | | "
            f"{rate:,.0f} | {rate / base:.2f}x |"
        )


def print_rss(supervised: dict[str, Any], reference: dict[str, Any]) -> None:
    rss = supervised["rss"]
    before = rss[0][1]
    print("# 3. RSS of the engine process (after gc.collect())")
    print()
    print("| when | bars replayed | RSS MB | vs before |")
    print("|---|---|---|---|")
    for i, (bars, mb) in enumerate(rss):
        when = "first RetrainStarted (before)" if i == 0 else f"after cycle {i}"
        print(f"| {when} | {bars:,} | {mb:,.1f} | {100 * (mb / before - 1):+.1f}% |")
    (bars0, ref0), (bars1, ref1) = reference["rss"]
    print(
        f"| reference (no supervisor), bar {bars0:,} → {bars1:,} | | {ref0:,.1f} → "
        f"{ref1:,.1f} | {100 * (ref1 / ref0 - 1):+.1f}% |"
    )
    print()
    growth = 100 * (rss[-1][1] / before - 1)
    print(f"growth after {len(rss) - 1} cycles: {growth:+.1f}% (goal < 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="bars a second, live part")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of each idle window")
    parser.add_argument("--rounds", type=int, default=2, help="retrainings in the live part")
    parser.add_argument("--time-limit", type=float, default=30.0, help="their budget, s")
    parser.add_argument("--cycles", type=int, default=10, help="cycles of the policy replay")
    args = parser.parse_args()
    seconds = WARMUP_SECONDS + (args.rounds + 1) * args.idle + args.rounds * (args.time_limit + 30)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        live_data = tmp / "momentum.csv"
        write_candles(momentum_candles(CHAMPION_BARS + int(2 * seconds * args.rate)), live_data)
        live_model = in_fresh_process(train_champion, live_data, tmp / "live/models", LIVE_START)
        policy_model = in_fresh_process(train_champion, HOURLY, tmp / "policy/models", POLICY_START)
        shutil.copytree(tmp / "policy/models", tmp / "reference/models")

        live = in_fresh_process(
            live_latency, tmp / "live", live_data, tmp / "live/models",
            args.rate, args.idle, args.rounds, args.time_limit,
        )  # fmt: skip
        supervised = in_fresh_process(
            policy_replay, tmp / "policy", HOURLY, tmp / "policy/models", args.cycles, None
        )
        references = []
        for i in range(REFERENCE_RUNS):
            run = in_fresh_process(
                policy_replay, tmp / f"reference-{i}", HOURLY, tmp / "reference/models",
                args.cycles, supervised,
            )  # fmt: skip
            references.append(run)

    print(f"# bench/retrain.py: {describe_machine()}")
    print(f"# champions, LightGBM 50 rounds: live part {live_model}, policy replay {policy_model}")
    print()
    print_latency(live, args)
    print()
    print_policy(supervised, references)
    print()
    print_rss(supervised, references[0])


if __name__ == "__main__":
    main()
