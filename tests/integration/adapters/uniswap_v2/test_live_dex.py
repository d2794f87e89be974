"""config/live-dex.yaml as shipped, run as a real daemon in its default dry run.

Everything it reaches is local and real: anvil started with ``--chain-id 1`` (the
config's chain) with the Uniswap V2 contracts, and the Binance-format exchange server of
``tests/fake_exchange.py`` serving ETHUSDT candles to the real ccxt client. The RPC URL,
the router and token addresses, the account and the exchange URL come through the
environment, as the config's header documents. The file is copied only to put its state
in a temporary directory, to use the test tokens' 18 decimals, to use the session's small
model, and to let the feed's warm-up candles trade (``max_candle_delay_bars: null``,
no slippage limit against bars that wander from the still pool): the exchange server's
candles are from 2021, and only those make fills in a test that lasts seconds, not hours.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilOptions, rpc_call
from adapters.uniswap_v2.artifacts import erc20_abi, router_abi
from adapters.uniswap_v2.deployment import UniswapV2Deployment, deploy_uniswap_v2, fund_account
from tests.fake_exchange import Candle, FakeBinance, load_source_rows
from tests.paper_support import quiet_supervisors
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port

pytestmark = pytest.mark.integration

TOKEN = 10**18
CONFIG = ROOT / "config" / "live-dex.yaml"


async def mainnet_like_chain(url: str) -> tuple[UniswapV2Deployment, str]:
    """Uniswap V2 at about the candles' price, and an account holding both tokens that
    has approved the router (so the node can estimate its swaps): its address."""
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        deployment = await deploy_uniswap_v2(
            w3, price=30_000, base_liquidity=200, symbol="WETH/USDC"
        )
        trader = Account.create()
        await fund_account(
            w3,
            deployment,
            trader.address,
            base_amount=10 * TOKEN,
            quote_amount=100_000 * TOKEN,
            eth_wei=10 * TOKEN,
        )
        for token in (deployment.base_token, deployment.quote_token):
            contract = w3.eth.contract(address=token, abi=erc20_abi())
            tx = await contract.functions.approve(deployment.router, 2**256 - 1).build_transaction(
                {
                    "from": trader.address,
                    "nonce": await w3.eth.get_transaction_count(trader.address),
                }
            )
            signed = trader.sign_transaction(tx)
            await w3.eth.wait_for_transaction_receipt(
                await w3.eth.send_raw_transaction(signed.raw_transaction)
            )
    finally:
        await w3.provider.disconnect()
    return deployment, trader.address


def shipped_config_copy(models: Path, tmp: Path, port: int) -> Path:
    """config/live-dex.yaml with its ``${...}`` references kept (read without them being
    interpolated), on temporary state, the test tokens and the small model."""
    config = yaml.safe_load(CONFIG.read_text())
    journal = str(tmp / "journal.sqlite")
    strategies = tmp / "strategies"
    strategies.mkdir()
    for shipped in (ROOT / "config" / "live-dex-strategies").glob("*.yaml"):
        settings = yaml.safe_load(shipped.read_text())
        settings.update(models_dir=str(models), model="btc-usdt-1h", train_if_missing=None)
        (strategies / shipped.name).write_text(yaml.safe_dump(settings, sort_keys=False))
    for entry in config["components"]:
        settings = entry.get("config", {})
        if entry["type"] == "journal":
            settings["path"] = journal
        if entry["type"] == "strategy_host":
            settings["dir"] = str(strategies)
        if entry["type"] == "portfolio":
            settings["instruments"][0].update(quote_decimals=18)
        if entry["type"] == "uniswap_v2_executor":
            settings["journal_path"] = journal
        if entry["type"] == "risk":
            # The warm-up arrives in one burst, before any paper fill is back; and the 2021
            # candles wander from the test pool's price, which nothing moves.
            settings.update(
                max_candle_delay_bars=None,
                max_orders_per_window=1_000,
                max_position_quote=None,
                max_slippage_bps=10_000,
            )
    quiet_supervisors(config)
    config.update(api={"host": "127.0.0.1", "port": port}, log={"format": "json"})
    path = tmp / "live-dex.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def journal_rows(path: Path, kind: str) -> list[dict[str, Any]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        rows = conn.execute("SELECT body FROM events WHERE type = ? ORDER BY id", (kind,))
        found = [json.loads(body) for (body,) in rows.fetchall()]
        conn.close()
    except sqlite3.OperationalError:
        return []  # not created yet
    return found


async def amounts_out(url: str, router: str, amount_in: int, path: list[str]) -> int:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        contract = w3.eth.contract(address=router, abi=router_abi())
        return (await contract.functions.getAmountsOut(amount_in, path).call())[-1]
    finally:
        await w3.provider.disconnect()


def test_live_dex_dry_run_fills_at_get_amounts_out_and_never_sends(models, tmp_path):
    candles = Candle.from_rows(load_source_rows("2021-01-01", "2021-01-15"))  # 336 hours
    with (
        Anvil(AnvilOptions(chain_id=1)) as anvil,
        FakeBinance(
            candles, symbol="ETHUSDT", base="ETH", quote="USDT"
        ).running_in_thread() as exchange,
    ):
        deployment, account = asyncio.run(mainnet_like_chain(anvil.url))
        nonce_before = rpc_call(anvil.url, "eth_getTransactionCount", [account, "latest"])
        block_before = rpc_call(anvil.url, "eth_blockNumber")
        env = {
            "ENGINE_RPC_URL": anvil.url,
            "ENGINE_ROUTER": deployment.router,
            "ENGINE_BASE_TOKEN": deployment.base_token,
            "ENGINE_QUOTE_TOKEN": deployment.quote_token,
            "ENGINE_ACCOUNT": account,
            "ENGINE_EXCHANGE_URL": exchange.api_base_url,
        }
        journal = tmp_path / "journal.sqlite"
        daemon = EngineProcess(
            "run", "--config", str(shipped_config_copy(models, tmp_path, free_port())), env=env
        )
        try:
            ready = daemon.wait_for_log("executor.ready", timeout=60)
            deadline = time.monotonic() + 90
            while len(journal_rows(journal, "OrderFilled")) < 3:
                assert daemon.proc.poll() is None, "".join(daemon.lines[-20:])
                assert time.monotonic() < deadline, "no three fills: " + "".join(daemon.lines[-20:])
                time.sleep(0.2)
            daemon.send(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0, "".join(daemon.lines[-20:])
        finally:
            daemon.kill()

        assert ready["mode"] == "dry_run"
        assert ready["chain_id"] == 1
        assert ready["account"] == account
        assert ready["real_funds"] is False
        fills = journal_rows(journal, "OrderFilled")
        assert {f["symbol"] for f in fills} == {"WETH/USDC"}  # ETH/USDT bars, published as it
        d = deployment
        for fill in fills:
            path = (
                [d.quote_token, d.base_token]
                if fill["side"] == "BUY"
                else [d.base_token, d.quote_token]
            )
            expected = asyncio.run(amounts_out(anvil.url, d.router, fill["amount_in"], path))
            assert fill["amount_out"] == expected, fill  # the pool never moved: nothing was sent
            assert fill["detail"] == ""  # estimated from the account, which could swap
            assert fill["gas_used"] > 50_000
            assert fill["venue_order_id"].startswith("dry-run-")
        assert rpc_call(anvil.url, "eth_getTransactionCount", [account, "latest"]) == nonce_before
        assert rpc_call(anvil.url, "eth_blockNumber") == block_before  # no transaction at all
        assert journal_rows(journal, "OrderFailed") == []
        events = [r.get("event") for r in daemon.records()]
        assert "risk.limits" in events
        assert "engine.stopped" in events
