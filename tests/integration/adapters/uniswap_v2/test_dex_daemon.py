"""The DEX loop as a real daemon: the shipped demo config on its own anvil, and a
kill -9 of a daemon trading on an external chain between a swap's send and its receipt."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.evm.anvil import rpc_call
from engine.config_loading import load_engine_config
from tests.paper_support import quiet_supervisors, write_strategies
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port, process_alive

pytestmark = pytest.mark.integration

START, END = "2021-01-01T00:00:00Z", "2021-01-10T23:00:00Z"
BARS = 240


def journal_rows(path: Path, *types: str) -> list[tuple[str, dict[str, Any]]]:
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        query = "SELECT type, body FROM events"
        if types:
            query += f" WHERE type IN ({','.join('?' * len(types))})"
        rows = conn.execute(query + " ORDER BY id", types).fetchall()
        conn.close()
    except sqlite3.OperationalError:
        return []  # created but no schema yet
    return [(kind, json.loads(body)) for kind, body in rows]


def wait_until(predicate: Any, timeout: float, what: str, process: EngineProcess) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.proc.poll() is None, f"daemon exited: {''.join(process.lines[-15:])}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def http_text(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as err:  # /ready may be 503: its body counts too
        return err.read().decode()


def demo_config(models: Path, tmp: Path, port: int) -> Path:
    """config/engine.yaml as shipped, on temporary state, ten days of 2021 at 20 bars/s."""
    config = load_engine_config(ROOT / "config" / "engine.yaml").model_dump(mode="json")
    for entry in config["components"]:
        settings = entry["config"]
        if entry["type"] == "journal":
            settings["path"] = str(tmp / "journal.sqlite")
        if entry["type"] == "replay":
            settings.update(start=START, end=END, speed=72_000)
        if entry["type"] == "strategy_host":
            settings["dir"] = str(write_strategies(models, tmp / "strategies"))
        if entry["type"] == "prediction_api":
            settings["models_dir"] = str(models)
    quiet_supervisors(config)
    config.update(api={"host": "127.0.0.1", "port": port}, log={"format": "json"})
    path = tmp / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_demo_trades_the_replayed_market_through_the_real_router_and_stops_anvil(models, tmp_path):
    port = free_port()
    journal = tmp_path / "journal.sqlite"
    daemon = EngineProcess("run", "--config", str(demo_config(models, tmp_path, port)))
    try:
        chain = daemon.wait_for_log("chain.ready", timeout=60)
        anvil_pid = chain["anvil_pid"]
        assert process_alive(anvil_pid)
        daemon.wait_for_log("engine.running", timeout=60)
        wait_until(
            lambda: len(journal_rows(journal, "Bar")) >= BARS, 60, "the replay's bars", daemon
        )
        time.sleep(1.0)  # the last bar's swaps settle
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()

        rows = journal_rows(journal)
        kinds = Counter(kind for kind, _ in rows)
        assert kinds["OrderFilled"] > 0, kinds
        assert kinds["OrderFailed"] == 0, [e for k, e in rows if k == "OrderFailed"]
        assert kinds["OrderSubmitted"] == kinds["OrderFilled"]
        # Every fill happened on the pool as the arbitrage left it at its bar's close:
        # within the 0.3% fee, the swap's own impact and nothing else.
        closes = {e["correlation_id"]: e["close"] for kind, e in rows if kind == "Bar"}
        for kind, fill in rows:
            if kind == "OrderFilled":
                close = closes[fill["correlation_id"]]
                assert abs(fill["price"] / close - 1) < 0.005, (fill, close)
                assert fill["gas_used"] > 0
                assert fill["venue_order_id"].startswith("0x")
        # What a user watches on /metrics.
        fills = kinds["OrderFilled"]
        assert f'trade_engine_dex_orders_total{{component="dex",outcome="filled"}} {fills}.0' in (
            metrics
        )
        swaps = "trade_engine_chain_arbitrage_swaps_total"
        arbitrage = [line for line in metrics.splitlines() if line.startswith(swaps)]
        assert arbitrage
        assert float(arbitrage[0].split()[-1]) > BARS / 2  # the pool followed the market
        assert "trade_engine_portfolio_equity_quote" in metrics
        assert "trade_engine_portfolio_drawdown_ratio" in metrics
        assert any(r.get("event") == "executor.ready" for r in daemon.records())

        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert daemon.wait_for_log("engine.stopped")["clean"] is True
        assert not process_alive(anvil_pid), "anvil outlived the daemon"
    finally:
        daemon.kill()


KILL_PRICE = 28923.63  # the pool stays here: no arbitrage on the external chain
KILL_END, KILL_BARS = "2021-01-04T23:00:00Z", 96  # the model trades from bar ~52 on


async def external_chain(anvil_url: str) -> tuple[Any, str, str]:
    """Uniswap V2 on the test's own anvil, and a funded trader (address, key)."""
    from eth_account import Account
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.uniswap_v2.deployment import deploy_uniswap_v2, fund_account

    w3 = AsyncWeb3(AsyncHTTPProvider(anvil_url))
    try:
        deployment = await deploy_uniswap_v2(
            w3, price=KILL_PRICE, base_liquidity=5_000_000 / KILL_PRICE, symbol="BTC/USDT"
        )
        trader = Account.create()
        await fund_account(
            w3, deployment, trader.address, quote_amount=10_000 * 10**18, eth_wei=10 * 10**18
        )
    finally:
        await w3.provider.disconnect()
    return deployment, trader.address, "0x" + bytes(trader.key).hex()


def external_config(models: Path, tmp: Path, anvil_url: str, deployment: Any, port: int) -> Path:
    """The demo's loop on an external chain: what a crash-safe deployment looks like."""
    journal = tmp / "journal.sqlite"
    config = {
        "name": "dex-external",
        "clock": "live",
        "shutdown_timeout_seconds": 4.0,
        "log": {"format": "json", "level": "info"},
        "api": {"host": "127.0.0.1", "port": port},
        "components": [
            {"name": "journal", "type": "journal", "config": {"path": str(journal)}},
            {
                "name": "market",
                "type": "replay",
                "config": {
                    "path": "samples/BTC-USDT_1h.csv.gz",
                    "symbol": "BTC/USDT",
                    "start": START,
                    "end": KILL_END,
                    "speed": 18_000,  # 5 bars/s
                },
            },
            {"name": "features", "type": "features", "config": {"feature_set": "stationary"}},
            {
                "name": "strategy",
                "type": "strategy_host",
                "config": {
                    "dir": str(write_strategies(models, tmp / "strategies")),
                    "watch": False,
                },
            },
            {
                "name": "portfolio",
                "type": "portfolio",
                "config": {
                    "instruments": [
                        {"symbol": "BTC/USDT", "base_decimals": 18, "quote_decimals": 18}
                    ],
                    "initial_balances": {"USDT": 10_000},
                    "eth_price_quote": 2000,
                },
            },
            {
                "name": "dex",
                "type": "uniswap_v2_executor",
                "config": {
                    "rpc_url": anvil_url,
                    "chain_id": deployment.chain_id,
                    "router": deployment.router,
                    "base_token": deployment.base_token,
                    "quote_token": deployment.quote_token,
                    "symbol": "BTC/USDT",
                    "journal_path": str(journal),
                    "receipt_timeout_seconds": 60,
                    # Fills land bars after their orders (as on a real chain): the
                    # catch-up must still put each one back where the journal has it.
                    "receipt_poll_seconds": 1.0,
                    "replace_after_seconds": 0,
                    # The pool stays at KILL_PRICE while the replay moves on: with its
                    # reserves known, risk would refuse most orders for slippage.
                    "pool_poll_seconds": 0,
                },
            },
            {
                "name": "risk",
                "type": "risk",
                "depends_on": ["portfolio"],
                "config": {"order_notional_quote": 1000, "max_position_quote": 5000},
            },
        ],
    }
    path = tmp / "external.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def router_txs(anvil_url: str, sender: str, router: str) -> list[str]:
    """Hashes of every mined transaction ``sender`` sent to the router."""
    latest = int(rpc_call(anvil_url, "eth_blockNumber"), 16)
    hashes = []
    for number in range(latest + 1):
        block = rpc_call(anvil_url, "eth_getBlockByNumber", [hex(number), True])
        for tx in block["transactions"]:
            if tx["from"].lower() == sender.lower() and (tx["to"] or "").lower() == router.lower():
                hashes.append(tx["hash"].lower())
    return hashes


def unsettled(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """order id → tx hash of swaps journalled as submitted and not yet settled."""
    sent = {e["order_id"]: e["venue_order_id"] for k, e in rows if k == "OrderSubmitted"}
    done = {e["order_id"] for k, e in rows if k in ("OrderFilled", "OrderFailed")}
    return {order_id: tx for order_id, tx in sent.items() if order_id not in done}


def test_kill_9_after_a_swap_is_sent_then_restart_settles_it_once_and_never_resends(
    models, tmp_path
):
    """The daemon is SIGKILLed with a swap on the node and no receipt (mining paused);
    the chain mines it while the daemon is dead; the restarted daemon catches up from
    the journal, re-sends nothing, and journals that swap's fill exactly once."""
    import asyncio

    from adapters.evm.anvil import Anvil

    anvil = Anvil().start()
    try:
        deployment, trader, key = asyncio.run(external_chain(anvil.url))
        port = free_port()
        config = external_config(models, tmp_path, anvil.url, deployment, port)
        journal = tmp_path / "journal.sqlite"
        env = {**os.environ, "ENGINE_PRIVATE_KEY": key}

        first = EngineProcess("run", "--config", str(config), env=env)
        try:
            wait_until(
                lambda: len(journal_rows(journal, "OrderFilled")) >= 2, 90, "two fills", first
            )
            anvil.rpc("evm_setAutomine", False)  # receipts stop coming
            in_flight: dict[str, str] = {}

            def swap_on_node_without_receipt() -> bool:
                pending = unsettled(journal_rows(journal))
                for order_id, tx in pending.items():
                    if anvil.rpc("eth_getTransactionByHash", tx):
                        in_flight[order_id] = tx
                return bool(in_flight)

            wait_until(swap_on_node_without_receipt, 90, "a swap sent and unmined", first)
            os.kill(first.proc.pid, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            first.kill()
        before = journal_rows(journal)
        anvil.rpc("evm_setAutomine", True)
        anvil.rpc("evm_mine")  # the chain moves on while the daemon is dead

        second = EngineProcess("run", "--config", str(config), env=env)
        try:
            wait_until(
                lambda: (
                    len(journal_rows(journal, "Bar")) >= KILL_BARS
                    and not unsettled(journal_rows(journal))
                ),
                120,
                "the catch-up, the rest of the replay and the settlement",
                second,
            )
            time.sleep(0.5)  # anything duplicated would be journalled by now
            pages = [http_text(port, path) for path in ("/status", "/metrics", "/ready")]
            second.send(signal.SIGTERM)
            assert second.wait(timeout=30) == 0, "".join(second.lines[-20:])
        finally:
            second.kill()
        # The key is in no log line of either run and in no page the API served.
        bare = key.removeprefix("0x").lower()
        for where, text in [("first", "".join(first.lines)), ("second", "".join(second.lines))]:
            assert bare not in text.lower(), f"private key in the {where} run's log"
        for text in pages:
            assert bare not in text.lower(), "private key in an API response"
        assert trader.lower() in pages[0].lower()  # /status shows the account, not the key
        events = [r.get("event") for r in second.records()]
        assert "journal.caught_up" in events
        assert "journal.resume_diverged" not in events
        # The book is re-derived from the first run's starting balances (re-published from
        # the journal) and the re-produced fills, and agrees with the chain.
        assert "balances.starting_from_journal" in events
        for run in (first, second):
            assert "portfolio.balance_mismatch" not in [r.get("event") for r in run.records()]

        after = journal_rows(journal)
        assert after[: len(before)] == before  # nothing lost or rewritten
        for order_id, tx in in_flight.items():
            fills = [e for k, e in after if k == "OrderFilled" and e["order_id"] == order_id]
            assert len(fills) == 1, order_id
            assert fills[0]["venue_order_id"].lower() == tx.lower()
        assert unsettled(after) == {}
        assert len([k for k, _ in after if k == "Bar"]) == KILL_BARS  # none re-journalled

        # Never sent twice: the trader's router transactions on chain are exactly the
        # journalled swaps, one per order.
        sent = {
            e["order_id"]: e["venue_order_id"].lower() for k, e in after if k == "OrderSubmitted"
        }
        on_chain = router_txs(anvil.url, trader, deployment.router)
        assert sorted(on_chain) == sorted(sent.values())
        filled = {e["order_id"] for k, e in after if k == "OrderFilled"}
        assert filled == set(sent)
    finally:
        anvil.stop()


KEYSTORE_PASSWORD = "demo-rehearsal-pw-7"
KEYSTORE_END, KEYSTORE_BARS = "2021-01-04T23:00:00Z", 96  # the model trades from bar ~52 on


def new_keystore_cli(path: Path) -> str:
    """`trade-engine keys new --out PATH` as a user runs it: the new account's address."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "engine", "keys", "new", "--out", str(path)],
        cwd=ROOT,
        env={**os.environ, "ENGINE_KEYSTORE_PASSWORD": KEYSTORE_PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return done.stdout.split()[0]


def test_demo_trades_as_a_keystore_made_by_keys_new_and_refuses_one_open_to_others(
    models, tmp_path
):
    """`keys new`, then the DEX demo with `local_chain.keystore_path`: the chain funds that
    account and every swap comes from it; the same keystore made 0644 stops the run
    before anything starts, naming the field and the fix."""
    keystore = tmp_path / "trader.json"
    address = new_keystore_cli(keystore)
    port = free_port()
    path = demo_config(models, tmp_path, port)
    config = yaml.safe_load(path.read_text())
    for entry in config["components"]:
        if entry["type"] == "local_chain":
            entry["config"]["keystore_path"] = str(keystore)
        if entry["type"] == "replay":
            entry["config"]["end"] = KEYSTORE_END
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    journal = tmp_path / "journal.sqlite"
    env = {"ENGINE_KEYSTORE_PASSWORD": KEYSTORE_PASSWORD}

    daemon = EngineProcess("run", "--config", str(path), env=env)
    try:
        ready = daemon.wait_for_log("chain.ready", timeout=60)
        assert ready["trader"] == address
        wait_until(
            lambda: (
                len(journal_rows(journal, "Bar")) >= KEYSTORE_BARS
                and not unsettled(journal_rows(journal))
            ),
            90,
            "the replay's bars and their swaps",
            daemon,
        )
        fills = [e for _, e in journal_rows(journal, "OrderFilled")]
        assert fills, "no swap in the replay"
        for fill in fills:
            tx = rpc_call(ready["rpc_url"], "eth_getTransactionByHash", [fill["venue_order_id"]])
            assert tx["from"].lower() == address.lower()
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    assert KEYSTORE_PASSWORD not in "".join(daemon.lines)

    keystore.chmod(0o644)
    refused = EngineProcess("run", "--config", str(path), env=env)
    try:
        assert refused.wait(timeout=60) == 2
    finally:
        refused.kill()
    output = "".join(refused.lines)
    assert "keystore_path" in output
    assert "is open to group or others (mode 0644)" in output
    assert f"chmod 600 {keystore}" in output
    assert "chain.ready" not in output  # refused before anything started
