"""Going live, on real anvil chains with the real Uniswap V2 contracts: the dry run, the
guards at start (chain id, real funds, account) and the portfolio's balances from the
chain, reconciled after fills and periodically."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from eth_account import Account
from prometheus_client import CollectorRegistry
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import AnvilOptions
from adapters.uniswap_v2.artifacts import erc20_abi
from adapters.uniswap_v2.executor import UniswapV2Executor
from engine.bus import EventBus
from engine.clock import LiveClock
from engine.component import ComponentContext, ComponentState
from engine.config import Secrets
from engine.events import (
    BalancesObserved,
    OrderFailed,
    OrderFilled,
    OrderSubmitted,
    StartingBalances,
)
from engine.portfolio import Portfolio, PortfolioConfig
from tests.chain_helpers import (
    TOKEN,
    Chain,
    Recorder,
    Trader,
    executor_config,
    new_trader,
    order,
    quote,
    start_chain,
)

pytest_plugins = ["tests.chain_fixtures"]

pytestmark = pytest.mark.integration

BASE_QUOTE = {"symbol": "BASE/QUOTE", "base_decimals": 18, "quote_decimals": 18}


@pytest.fixture(scope="module")
def mainnet_id_chain() -> Iterator[Chain]:
    """anvil started with ``--chain-id 1``: a chain the executor must treat as real."""
    c = start_chain(AnvilOptions(chain_id=1))
    yield c
    c.anvil.stop()


class Engine:
    """A bus with a portfolio (optional) and one executor, started in that order."""

    def __init__(self, secrets: Secrets) -> None:
        self.bus = EventBus()
        self.recorder = Recorder(self.bus)
        self.registry = CollectorRegistry()
        self.context = ComponentContext(self.bus, LiveClock(), self.registry, secrets)
        self.portfolio: Portfolio | None = None
        self.executor: UniswapV2Executor | None = None

    async def start(self, chain: Chain, portfolio: dict[str, Any] | None, **config: Any) -> Engine:
        if portfolio is not None:
            settings = PortfolioConfig.model_validate({"instruments": [BASE_QUOTE], **portfolio})
            self.portfolio = Portfolio("portfolio", settings, self.context)
            await self.portfolio.start()
        self.executor = UniswapV2Executor("dex", executor_config(chain, **config), self.context)
        await self.executor.start()
        return self

    async def stop(self) -> None:
        for component in (self.executor, self.portfolio):
            if component is not None:
                await component.stop()

    async def outcome(self, order_id: str, within: float = 15.0) -> Any:
        return await self.recorder.wait_for(
            lambda e: isinstance(e, OrderFilled | OrderFailed) and e.order_id == order_id, within
        )

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def engines() -> AsyncIterator[Any]:
    made: list[Engine] = []

    async def make(
        chain: Chain,
        secrets: Secrets | None = None,
        portfolio: dict[str, Any] | None = None,
        **config: Any,
    ) -> Engine:
        engine = Engine(secrets or Secrets())
        made.append(engine)
        return await engine.start(chain, portfolio, **config)

    yield make
    for engine in made:
        await engine.stop()


def key_of(trader: Trader) -> Secrets:
    return Secrets.from_env({"ENGINE_PRIVATE_KEY": trader.private_key})


async def send_as(chain: Chain, trader: Trader, build: Any) -> None:
    """Sign and mine one transaction of ``trader``'s, outside the engine."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        nonce = await w3.eth.get_transaction_count(trader.address)
        tx = await build(w3).build_transaction({"from": trader.address, "nonce": nonce})
        signed = w3.eth.account.sign_transaction(tx, trader.private_key)
        receipt = await w3.eth.wait_for_transaction_receipt(
            await w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1
    finally:
        await w3.provider.disconnect()


async def approve_router(chain: Chain, trader: Trader) -> None:
    d = chain.deployment
    for token in (d.base_token, d.quote_token):
        await send_as(
            chain,
            trader,
            lambda w3, token=token: w3.eth.contract(
                address=token, abi=erc20_abi()
            ).functions.approve(d.router, 2**256 - 1),
        )


def nonce(chain: Chain, address: str) -> int:
    return int(chain.anvil.rpc("eth_getTransactionCount", address, "latest"), 16)


def token_balance(chain: Chain, token: str, address: str) -> int:
    data = "0x70a08231" + address.removeprefix("0x").lower().rjust(64, "0")
    return int(chain.anvil.rpc("eth_call", {"to": token, "data": data}, "latest"), 16)


# -- dry run ------------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "amount_in"), [("BUY", 1_000 * TOKEN), ("SELL", 2 * TOKEN)])
async def test_dry_run_fills_at_get_amounts_out_to_the_unit_with_estimated_gas_and_sends_nothing(
    mainnet_id_chain, engines, side, amount_in
):
    """On a chain whose id is 1, with a funded, approved account given as a read-only
    address and no key at all: fills equal the router's quote, gas is the node's estimate,
    and the account's nonce and balances do not move."""
    chain = mainnet_id_chain
    trader = await new_trader(chain)
    await approve_router(chain, trader)
    d = chain.deployment
    before = (
        nonce(chain, trader.address),
        token_balance(chain, d.base_token, trader.address),
        token_balance(chain, d.quote_token, trader.address),
    )
    engine = await engines(chain, Secrets(), dry_run=True, account=trader.address)
    assert engine.executor.signer is None
    assert engine.executor.status()["mode"] == "dry_run"

    results = []
    for _ in range(3):  # the pool does not move: each fill is priced on it as it is
        expected = await quote(chain, side, amount_in)
        request = order(side, amount_in)
        await engine.bus.publish(request)
        results.append((expected, await engine.outcome(request.order_id)))

    for expected, filled in results:
        assert isinstance(filled, OrderFilled), filled
        assert filled.amount_out == expected
        assert filled.amount_in == amount_in
        assert filled.detail == ""
        assert 60_000 < filled.gas_used < 200_000  # the node's estimate of this very swap
        assert filled.gas_cost_wei > 0
        assert filled.venue_order_id.startswith("dry-run-")
    submitted = engine.recorder.of(OrderSubmitted)
    assert [s.nonce for s in submitted] == [None] * 3
    after = (
        nonce(chain, trader.address),
        token_balance(chain, d.base_token, trader.address),
        token_balance(chain, d.quote_token, trader.address),
    )
    assert after == before
    assert engine.metric("trade_engine_dex_orders_total", component="dex", outcome="filled") == 3


async def test_dry_run_without_a_key_or_an_account_fills_with_assumed_gas_and_says_so(
    mainnet_id_chain, engines
):
    engine = await engines(mainnet_id_chain, Secrets(), dry_run=True, dry_run_gas=123_456)
    assert engine.executor.address is None
    expected = await quote(mainnet_id_chain, "BUY", 50 * TOKEN)
    request = order("BUY", 50 * TOKEN)
    await engine.bus.publish(request)
    filled = await engine.outcome(request.order_id)
    assert isinstance(filled, OrderFilled), filled
    assert filled.amount_out == expected
    assert filled.gas_used == 123_456
    assert filled.detail == "dry run without an account: gas not estimated, 123456 assumed"


@pytest.mark.parametrize(
    ("funded", "expected"),
    [
        (False, "INSUFFICIENT_BALANCE: balance 0 < amount_in 10000000000000000000"),
        (True, "INSUFFICIENT_ALLOWANCE: router allowance 0 < amount_in 10000000000000000000"),
    ],
    ids=["empty account", "unapproved account"],
)
async def test_dry_run_for_an_account_that_cannot_swap_still_fills_and_says_why(
    mainnet_id_chain, engines, funded, expected
):
    account = (await new_trader(mainnet_id_chain)).address if funded else Account.create().address
    engine = await engines(mainnet_id_chain, dry_run=True, account=account)
    amount_out = await quote(mainnet_id_chain, "SELL", 10 * TOKEN)
    request = order("SELL", 10 * TOKEN)
    await engine.bus.publish(request)
    filled = await engine.outcome(request.order_id)
    assert isinstance(filled, OrderFilled), filled
    assert filled.amount_out == amount_out
    assert filled.detail == f"dry run: gas not estimated ({expected}), 130000 assumed"
    assert nonce(mainnet_id_chain, account) == 0


async def test_dry_run_refuses_what_the_live_swap_would_refuse(mainnet_id_chain, engines):
    engine = await engines(mainnet_id_chain, dry_run=True)
    too_high = await quote(mainnet_id_chain, "BUY", 10 * TOKEN) + 1
    request = order("BUY", 10 * TOKEN, min_amount_out=too_high)
    await engine.bus.publish(request)
    failed = await engine.outcome(request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "INSUFFICIENT_OUTPUT_AMOUNT"
    assert engine.recorder.of(OrderSubmitted) == []


# -- guards at start ----------------------------------------------------------------------


async def test_live_executor_on_a_chain_other_than_31337_refuses_to_start_naming_allow_real_funds(
    mainnet_id_chain, engines
):
    trader = await new_trader(mainnet_id_chain)
    with pytest.raises(RuntimeError) as info:
        await engines(mainnet_id_chain, key_of(trader), chain_id=1)
    message = str(info.value)
    assert "refusing to send transactions on chain 1" in message
    assert "`allow_real_funds: true`" in message
    assert "`dry_run: true`" in message
    assert nonce(mainnet_id_chain, trader.address) == 0


async def test_live_executor_with_allow_real_funds_trades_on_that_chain(mainnet_id_chain, engines):
    trader = await new_trader(mainnet_id_chain)
    engine = await engines(mainnet_id_chain, key_of(trader), chain_id=1, allow_real_funds=True)
    expected = await quote(mainnet_id_chain, "SELL", TOKEN)
    request = order("SELL", TOKEN)
    await engine.bus.publish(request)
    filled = await engine.outcome(request.order_id)
    assert isinstance(filled, OrderFilled)
    assert filled.amount_out == expected
    assert filled.venue_order_id.startswith("0x")


async def test_a_chain_id_mismatch_stops_the_start_naming_both_ids(mainnet_id_chain, engines):
    with pytest.raises(RuntimeError) as info:
        await engines(mainnet_id_chain, dry_run=True, chain_id=31337)
    assert str(info.value) == (
        f"chain id mismatch: the node at {mainnet_id_chain.url} is chain 1, but `chain_id` "
        "is 31337: point rpc_url at a node of chain 31337, or correct chain_id"
    )


async def test_a_key_for_another_account_than_the_configured_one_refuses_to_start(
    chain, trader, engines
):
    other = Account.create().address
    with pytest.raises(RuntimeError, match=f"the signing key is for {trader.address}, but "):
        await engines(chain, key_of(trader), account=other)


async def test_portfolio_decimals_that_differ_from_the_tokens_refuse_the_start(
    chain, trader, engines
):
    engine = Engine(key_of(trader))
    wrong = {**BASE_QUOTE, "quote_decimals": 6}
    settings = PortfolioConfig.model_validate({"instruments": [wrong]})
    engine.portfolio = Portfolio("portfolio", settings, engine.context)
    await engine.portfolio.start()
    engine.executor = UniswapV2Executor("dex", executor_config(chain), engine.context)
    try:
        with pytest.raises(RuntimeError, match="'quote_decimals': 6}, but the tokens on chain"):
            await engine.executor.start()
    finally:
        await engine.stop()


async def test_the_start_is_logged_with_account_chain_balances_and_limits(chain, trader, engines):
    with structlog.testing.capture_logs() as logs:
        await engines(chain, key_of(trader), portfolio={}, reconcile_seconds=0)
    ready = next(r for r in logs if r["event"] == "executor.ready")
    assert ready["account"] == trader.address
    assert ready["chain_id"] == 31337
    assert ready["mode"] == "live"
    assert ready["balances"] == {
        "ETH": "100.000000000000000000 ETH",
        "BASE": "1000.000000000000000000 BASE",
        "QUOTE": "1000000.000000000000000000 QUOTE",
    }
    assert ready["max_fee_gwei"] == 500.0


# -- balances from the chain --------------------------------------------------------------


async def test_portfolio_starts_from_the_chain_and_detects_a_transfer_behind_its_back(
    chain, engines
):
    trader = await new_trader(chain, base=5 * TOKEN, quote=20_000 * TOKEN)
    # The configured balances are replaced by the chain's.
    engine = await engines(
        chain, key_of(trader), portfolio={"initial_balances": {"QUOTE": 1}}, reconcile_seconds=0.2
    )
    portfolio = engine.portfolio
    assert portfolio.balances == {"BASE": 5 * TOKEN, "QUOTE": 20_000 * TOKEN}
    [starting] = engine.recorder.of(StartingBalances)
    assert starting.account == trader.address
    assert starting.eth_wei == 100 * TOKEN

    # Fills keep the book and the chain in agreement: reconciled after each one.
    for side, amount in (("BUY", 1_000 * TOKEN), ("SELL", TOKEN)):
        request = order(side, amount)
        await engine.bus.publish(request)
        assert isinstance(await engine.outcome(request.order_id), OrderFilled)
        await engine.recorder.wait_for(
            lambda e, r=request: (
                isinstance(e, BalancesObserved)
                and e.reason == "fill"
                and e.seq > engine.recorder.of(OrderFilled)[-1].seq
            )
        )
    assert portfolio.state is ComponentState.RUNNING
    assert portfolio.balance_checks >= 2
    assert engine.metric("trade_engine_portfolio_balance_mismatches_total", token="QUOTE") == 0

    # Behind the engine's back, the account's key moves 7 QUOTE out.
    d = chain.deployment
    sink = Account.create().address
    await send_as(
        chain,
        trader,
        lambda w3: w3.eth.contract(address=d.quote_token, abi=erc20_abi()).functions.transfer(
            sink, 7 * TOKEN
        ),
    )
    deadline = asyncio.get_running_loop().time() + 10
    while portfolio.state is not ComponentState.DEGRADED:
        assert asyncio.get_running_loop().time() < deadline, "mismatch not detected"
        await asyncio.sleep(0.05)
    assert portfolio.health().reason.startswith("balances differ from the chain at block ")
    assert "QUOTE book " in portfolio.health().reason
    assert engine.metric("trade_engine_portfolio_balance_mismatches_total", token="QUOTE") >= 1
    assert engine.metric("trade_engine_portfolio_balance_mismatches_total", token="BASE") == 0
    assert portfolio.balance("QUOTE") - token_balance(chain, d.quote_token, trader.address) == (
        7 * TOKEN
    )  # the book is not rewritten to hide it


async def test_the_pools_reserves_and_the_gas_price_reach_the_market_view(chain, engines):
    """So the risk manager's price-impact, slippage and gas checks use the real pool."""
    engine = await engines(chain, dry_run=True, pool_poll_seconds=0.05)
    market = engine.context.market_view
    d = chain.deployment

    def pair_reserves() -> tuple[int, int]:
        raw = chain.anvil.rpc("eth_call", {"to": d.pair, "data": "0x0902f1ac"}, "latest")
        r0, r1 = int(raw[2:66], 16), int(raw[66:130], 16)
        return (r0, r1) if d.base_is_token0 else (r1, r0)

    assert market.reserves("BASE/QUOTE") == pair_reserves()
    assert market.gas_price_wei() > 0
    assert market.quote("BASE/QUOTE", "SELL", TOKEN) == await quote(chain, "SELL", TOKEN)
    mover = await new_trader(chain)
    await approve_router(chain, mover)
    router = await engines(chain, key_of(mover), pool_poll_seconds=0)
    request = order("SELL", 5 * TOKEN)
    await router.bus.publish(request)
    assert isinstance(await router.outcome(request.order_id), OrderFilled)
    moved = pair_reserves()
    deadline = asyncio.get_running_loop().time() + 5
    while market.reserves("BASE/QUOTE") != moved:
        assert asyncio.get_running_loop().time() < deadline, "reserves not refreshed"
        await asyncio.sleep(0.02)
