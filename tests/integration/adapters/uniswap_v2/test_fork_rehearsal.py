"""The fork rehearsal: the demo chain forks another chain and trades that chain's own
Uniswap V2 pool with real transactions, as the account of a keystore.

The forked chain here is a local anvil with the Uniswap V2 deployment and a chain id of
1, standing in for mainnet; it is reached through a proxy whose path carries an "API
key", as a provider's URL would. The origin must end exactly as it started (block
number, pools, the account's balances and nonce), and no transaction may ever reach it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilError, AnvilOptions, free_port
from adapters.evm.keys import new_keystore
from adapters.uniswap_v2.artifacts import erc20_abi, pair_abi, router_abi
from adapters.uniswap_v2.deployment import (
    UniswapV2Deployment,
    add_eth_liquidity,
    deploy_uniswap_v2,
    fund_account,
)
from adapters.uniswap_v2.executor import UniswapV2Executor, UniswapV2ExecutorConfig
from adapters.uniswap_v2.local_chain import LocalChain, LocalChainConfig
from engine.bus import EventBus
from engine.clock import LiveClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.events import OrderFailed, OrderFilled
from tests import factories
from tests.chain_helpers import Recorder, RpcProxy
from tests.processes import process_alive

pytestmark = pytest.mark.integration

TOKEN = 10**18
PASSWORD = "rehearsal-password-1"
API_KEY = "5ecre7" + "ab" * 12  # what a provider's URL carries in its path


@dataclass
class Origin:
    anvil: Anvil
    deployment: UniswapV2Deployment
    weth_pair: str


async def _set_up_origin(url: str) -> tuple[UniswapV2Deployment, str]:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        d = await deploy_uniswap_v2(w3, price=1000, base_liquidity=10_000, symbol="BTC/USDT")
        # The WETH pool the fork buys its quote tokens through: 2,000 USDT per ETH.
        weth_pair = await add_eth_liquidity(w3, d, d.quote_token, 2_000_000 * TOKEN, 1_000 * TOKEN)
        return d, weth_pair
    finally:
        await w3.provider.disconnect()


@pytest.fixture
def origin() -> Iterator[Origin]:
    """The chain to fork: Uniswap V2 with a BTC/USDT and a WETH/USDT pool, chain id 1."""
    anvil = Anvil(AnvilOptions(chain_id=1)).start()
    try:
        deployment, weth_pair = asyncio.run(_set_up_origin(anvil.url))
        yield Origin(anvil, deployment, weth_pair)
    finally:
        anvil.stop()


async def chain_state(url: str, d: UniswapV2Deployment, pairs: list[str], account: str) -> Any:
    """Block number, the pools' reserves, and the account's ETH, tokens and nonce."""
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        reserves = [
            (await w3.eth.contract(address=p, abi=pair_abi()).functions.getReserves().call())[:2]
            for p in pairs
        ]
        tokens = [
            await w3.eth.contract(address=t, abi=erc20_abi()).functions.balanceOf(account).call()
            for t in (d.base_token, d.quote_token)
        ]
        return {
            "block": await w3.eth.block_number,
            "reserves": reserves,
            "eth": await w3.eth.get_balance(account),
            "tokens": tokens,
            "nonce": await w3.eth.get_transaction_count(account),
        }
    finally:
        await w3.provider.disconnect()


async def amount_out(url: str, d: UniswapV2Deployment, path: list[str], amount_in: int) -> int:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        router = w3.eth.contract(address=d.router, abi=router_abi())
        return (await router.functions.getAmountsOut(amount_in, path).call())[-1]
    finally:
        await w3.provider.disconnect()


async def test_fork_rehearsal_trades_the_forked_pool_as_the_keystore_account_and_the_origin_never_changes(  # noqa: E501
    origin, tmp_path
):
    d = origin.deployment
    keystore = tmp_path / "trader.json"
    address = new_keystore(keystore, PASSWORD)
    # The account holds something on the origin too: the rehearsal must not touch it.
    w3 = AsyncWeb3(AsyncHTTPProvider(origin.anvil.url))
    await fund_account(w3, d, address, quote_amount=5 * TOKEN, eth_wei=TOKEN)
    await w3.provider.disconnect()
    pairs = [d.pair, origin.weth_pair]
    before = await chain_state(origin.anvil.url, d, pairs, address)

    methods: list[str] = []

    async def record(method: str, _params: list[Any]) -> bool:
        methods.append(method)
        return True

    proxy = RpcProxy(origin.anvil.url, record, path=f"/v3/{API_KEY}")
    fork_url = await proxy.start()
    bus = EventBus()
    secrets = Secrets.from_env({"ENGINE_KEYSTORE_PASSWORD": PASSWORD})
    context = ComponentContext(bus, LiveClock(), CollectorRegistry(), secrets)
    settings = LocalChainConfig(
        symbol="BTC/USDT",
        fork_url=fork_url,
        fork_block=before["block"],
        router=d.router,
        base_token=d.base_token,
        quote_token=d.quote_token,
        fund_quote=10_000,
        fund_eth=5,
        keystore_path=keystore,
    )
    chain = LocalChain("chain", settings, context)
    executor = UniswapV2Executor(
        "dex",
        UniswapV2ExecutorConfig(chain="chain", symbol="BTC/USDT", receipt_poll_seconds=0.02),
        context,
        depends_on=("chain",),
    )
    recorder = Recorder(bus)
    with structlog.testing.capture_logs() as logs:
        await chain.start()
        try:
            await executor.start()
            fork = chain.rpc_url
            assert chain.trader.address == address  # the keystore's account trades
            assert chain.settings.arbitrage_on is False
            forked = await chain_state(fork, d, pairs, address)
            assert int(origin.anvil.rpc("eth_chainId"), 16) == 1
            assert int(chain.anvil.rpc("eth_chainId"), 16) == 31337  # never valid on "mainnet"
            # Funded on the fork: 10,000 USDT bought with ETH through the WETH pool (on
            # top of the origin's 5), ETH for gas, the router approved for both tokens.
            assert forked["tokens"] == [0, 10_005 * TOKEN]
            assert forked["reserves"][0] == before["reserves"][0]  # the traded pool as forked
            assert forked["reserves"][1] != before["reserves"][1]  # the funding swap
            assert 4 * TOKEN < forked["eth"] < 5 * TOKEN
            assert forked["nonce"] == before["nonce"] + 2  # the two approvals

            # A BUY and a SELL: real swaps on the forked pool, at the router's quotes.
            fills = []
            for side, amount, path in (
                ("BUY", 1_000 * TOKEN, [d.quote_token, d.base_token]),
                ("SELL", TOKEN // 2, [d.base_token, d.quote_token]),
            ):
                expected = await amount_out(fork, d, path, amount)
                request = factories.order(
                    side, amount, order_id=f"rehearsal-{side}", symbol="BTC/USDT"
                )
                bus.publish_nowait(request)
                fill = await recorder.wait_for(
                    lambda e, oid=request.order_id: (
                        isinstance(e, OrderFilled | OrderFailed) and e.order_id == oid
                    ),
                    within=20,
                )
                assert isinstance(fill, OrderFilled), fill
                assert fill.amount_out == expected
                fills.append(fill)
            for fill in fills:
                receipt = chain.anvil.rpc("eth_getTransactionReceipt", fill.venue_order_id)
                assert receipt["status"] == "0x1"
                assert receipt["from"].lower() == address.lower()
                assert origin.anvil.rpc("eth_getTransactionByHash", fill.venue_order_id) is None

            # Each bar re-reads the forked pool for the risk manager (no arbitrage here).
            bus.publish_nowait(factories.bar(1_000.0, ts=1, symbol="BTC/USDT"))
            await chain.pool_settled()
            traded = await chain_state(fork, d, pairs, address)
            reserve0, reserve1 = traded["reserves"][0]
            base_quote = (reserve0, reserve1) if d.base_is_token0 else (reserve1, reserve0)
            assert context.market_view.reserves("BTC/USDT") == base_quote
            assert traded["tokens"][0] == fills[0].amount_out - TOKEN // 2
            anvil_pid = chain.anvil.pid
        finally:
            await executor.stop()
            await chain.stop()
            await proxy.stop()
    assert not process_alive(anvil_pid)

    # The origin is exactly as it was, and no transaction was ever sent to it.
    assert await chain_state(origin.anvil.url, d, pairs, address) == before
    assert methods, "the fork fetched no state through the proxy"
    assert not [m for m in methods if m.startswith("eth_send")]
    # The fork URL's API key is in no log record; its origin is.
    assert API_KEY not in repr(logs)
    ready = next(record for record in logs if record["event"] == "chain.ready")
    assert ready["fork"] == fork_url.split("/v3/")[0]
    assert ready["trader"] == address


def test_a_fork_that_cannot_start_names_the_url_without_its_api_key():
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/v3/{API_KEY}"
    with pytest.raises(AnvilError) as info:
        Anvil(AnvilOptions(fork_url=url)).start(timeout=10)
    assert API_KEY not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert API_KEY not in repr(AnvilOptions(fork_url=url))
