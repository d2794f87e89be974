"""The demo's chain: anvil with Uniswap V2, a funded trading account, and an arbitrageur.

At start the component launches anvil on 127.0.0.1 (a free port), deploys WETH9, two
test tokens, the Factory and Router02, seeds the ``symbol`` pool at ``initial_price``
with ``pool_depth_quote`` quote tokens, and funds a fresh random trading account
(its key lives in this process's memory only; ``ENGINE_PRIVATE_KEY`` is never needed
for a throw-away dev chain). A ``uniswap_v2_executor`` whose ``chain`` names this
component takes the addresses and the account from it.

Each replayed ``Bar`` of ``symbol`` triggers the arbitrage step: the dev account swaps
through the real router until the pool prices the bar's close (:mod:`.arbitrage`).
Executors wait for the step of the bars before their order (:meth:`pool_settled`),
so an order trades against the pool as it stood at its bar's close. Stopping the
component stops anvil.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

from eth_account import Account
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, SecretStr, field_validator
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilOptions
from adapters.evm.keys import Signer
from adapters.uniswap_v2.arbitrage import reserves_at_price, swap_to_price
from adapters.uniswap_v2.artifacts import pair_abi, router_abi
from adapters.uniswap_v2.deployment import (
    CALL_GAS,
    UniswapV2Deployment,
    deploy_uniswap_v2,
    fund_account,
    to_base_units,
)
from engine.amm import get_amount_out
from engine.component import Component, ComponentContext, ComponentState
from engine.config import StrictModel
from engine.events import Bar

FAR_DEADLINE = 2**40  # the arbitrageur's swaps never expire


class LocalChainConfig(StrictModel):
    symbol: str = Field(
        pattern=r"^[^/]+/[^/]+$", description="Market `BASE/QUOTE` of the pool (bars, orders)."
    )
    initial_price: float = Field(
        gt=0, description="QUOTE per BASE when the pool is seeded (the first bar moves it)."
    )
    pool_depth_quote: float = Field(
        5_000_000.0, gt=0, description="Quote tokens in the pool when it is seeded."
    )
    fund_quote: float = Field(10_000.0, ge=0, description="Quote tokens given to the trader.")
    fund_base: float = Field(0.0, ge=0, description="Base tokens given to the trader.")
    fund_eth: float = Field(10.0, gt=0, description="ETH given to the trader for gas.")
    arbitrage: bool = Field(
        True, description="Move the pool to each bar's close with an arbitrage swap."
    )
    min_move_bps: float = Field(
        1.0, ge=0, description="Skip the arbitrage when the pool is already this close (bps)."
    )
    port: int = Field(0, ge=0, le=65535, description="anvil's port; 0 picks a free one.")
    block_time: float | None = Field(
        None, gt=0, description="Seconds per block; unset: a block per transaction."
    )
    settle_timeout_seconds: float = Field(
        30.0, gt=0, description="How long an executor waits for a pending arbitrage step."
    )

    @field_validator("symbol")
    @classmethod
    def _distinct(cls, value: str) -> str:
        base, quote = value.split("/")
        if base == quote:
            raise ValueError(f"base and quote must differ, got {value!r}")
        return value


class LocalChain(Component):
    """Runs anvil + Uniswap V2 for the engine's lifetime and keeps the pool at market."""

    needs_wall_clock = True

    Config = LocalChainConfig

    def __init__(
        self,
        name: str,
        settings: LocalChainConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.anvil: Anvil | None = None
        self.deployment: UniswapV2Deployment | None = None
        account = Account.create()
        self.trader = Signer(account)
        self._trader_key = SecretStr("0x" + bytes(account.key).hex())
        self._w3: AsyncWeb3[Any] | None = None
        self._tail: asyncio.Task[None] | None = None  # the latest arbitrage step
        self._market = context.market_view  # the risk manager sizes on its pools
        self._reserves = (0, 0)
        self.arbitrage_swaps = 0
        self.arbitrage_failures = 0
        self.pool_price = 0.0

    @property
    def rpc_url(self) -> str:
        if self.anvil is None:
            raise RuntimeError(f"chain {self.name!r} is not started")
        return self.anvil.url

    def secret_values(self) -> list[SecretStr]:
        """The trader's key, for executors to scrub from any text they publish."""
        return [self._trader_key]

    async def on_start(self) -> None:
        s = self.settings
        self.anvil = await asyncio.to_thread(
            Anvil(AnvilOptions(port=s.port, block_time=s.block_time)).start
        )
        self._w3 = w3 = AsyncWeb3(AsyncHTTPProvider(self.anvil.url))
        deployment = await deploy_uniswap_v2(
            w3,
            price=s.initial_price,
            base_liquidity=s.pool_depth_quote / s.initial_price,
            symbol=s.symbol,
        )
        self.deployment = deployment
        await fund_account(
            w3,
            deployment,
            w3.to_checksum_address(self.trader.address),
            base_amount=to_base_units(s.fund_base, deployment.base_decimals),
            quote_amount=to_base_units(s.fund_quote, deployment.quote_decimals),
            eth_wei=to_base_units(s.fund_eth, 18),
        )
        self._pair = w3.eth.contract(address=deployment.pair, abi=pair_abi())
        self._router = w3.eth.contract(address=deployment.router, abi=router_abi())
        self._scale = Fraction(10**deployment.quote_decimals, 10**deployment.base_decimals)
        self.pool_price = s.initial_price
        self._reserves = await self._read_reserves()
        self._market.set_pool(s.symbol, *self._reserves, get_amount_out)
        self.register_collector(_ChainCollector(self))
        if s.arbitrage:
            self.subscribe(Bar, self._on_bar, name=f"{self.name}.arbitrage")
        self.log.info(
            "chain.ready",
            rpc_url=self.anvil.url,
            anvil_pid=self.anvil.pid,
            router=deployment.router,
            pair=deployment.pair,
            base_token=deployment.base_token,
            quote_token=deployment.quote_token,
            trader=self.trader.address,
            deploy_seconds=round(deployment.deploy_seconds, 3),
        )

    async def on_stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
        if self._w3 is not None:
            await self._w3.provider.disconnect()
        if self.anvil is not None and self.anvil.proc is not None:
            pid = self.anvil.pid
            await asyncio.to_thread(self.anvil.stop)
            self.log.info("chain.stopped", anvil_pid=pid)

    # -- arbitrage ---------------------------------------------------------------------

    def _on_bar(self, bar: Bar) -> None:
        """Queue the step behind the previous one: steps run in bar order, one at a time.

        The risk manager sizes this bar's order before the step is mined, so the market
        view gets the reserves the step will leave (same ``k``) right away."""
        if bar.symbol != self.settings.symbol:
            return
        base, quote = reserves_at_price(*self._reserves, Fraction(bar.close) * self._scale)
        self._market.set_pool(self.settings.symbol, base, quote, get_amount_out)
        previous = self._tail
        self._tail = asyncio.get_running_loop().create_task(self._step_after(previous, bar))

    async def _step_after(self, previous: asyncio.Task[None] | None, bar: Bar) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await self.move_pool_to(bar.close)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The demo keeps going on a stale pool price: DEGRADED (so /ready says so),
            # logged when it starts failing, every failure counted in the metric.
            self.arbitrage_failures += 1
            if self.state is ComponentState.RUNNING:
                self.log.error("chain.arbitrage_failed", bar=bar.correlation_id, error=repr(exc))
                self.degrade(f"arbitrage failing: {type(exc).__name__}")
            return
        if self.state is ComponentState.DEGRADED:
            self.recover()

    async def move_pool_to(self, price: float) -> None:
        """Swap as the dev account until the pool prices ``price`` QUOTE per BASE."""
        deployment = self.deployment
        assert deployment is not None
        base, quote = await self._read_reserves()
        target = Fraction(price) * self._scale
        swap = swap_to_price(base, quote, target, Fraction(self.settings.min_move_bps) / 10_000)
        if swap is not None and swap.amount_in > 0:
            tokens = [deployment.quote_token, deployment.base_token]
            path = tokens if swap.pay == "quote" else tokens[::-1]
            call = self._router.functions.swapExactTokensForTokens(
                swap.amount_in, 0, path, deployment.deployer, FAR_DEADLINE
            )
            tx_hash = await call.transact({"from": deployment.deployer, "gas": CALL_GAS})
            receipt = await self._w3.eth.wait_for_transaction_receipt(  # type: ignore[union-attr]
                tx_hash, timeout=self.settings.settle_timeout_seconds, poll_latency=0.005
            )
            if receipt["status"] != 1:
                raise RuntimeError(f"arbitrage swap reverted: {tx_hash.to_0x_hex()}")
            self.arbitrage_swaps += 1
            base, quote = await self._read_reserves()
        self.pool_price = price
        self._reserves = (base, quote)
        self._market.set_pool(self.settings.symbol, base, quote, get_amount_out)

    async def _read_reserves(self) -> tuple[int, int]:
        """(base, quote) reserves of the pool, in base units."""
        reserve0, reserve1, _ = await self._pair.functions.getReserves().call()
        if self.deployment is not None and self.deployment.base_is_token0:
            return reserve0, reserve1
        return reserve1, reserve0

    async def pool_settled(self) -> None:
        """Return once every arbitrage step queued so far has finished."""
        tail = self._tail
        if tail is not None and not tail.done():
            async with asyncio.timeout(self.settings.settle_timeout_seconds):
                await asyncio.shield(tail)


class _ChainCollector(Collector):
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    def collect(self) -> list[Metric]:
        labels = ["component", "symbol"]
        key = [self.chain.name, self.chain.settings.symbol]
        swaps = CounterMetricFamily(
            "trade_engine_chain_arbitrage_swaps",
            "Arbitrage swaps that moved the demo pool to a bar's close.",
            labels=labels,
        )
        swaps.add_metric(key, self.chain.arbitrage_swaps)
        failures = CounterMetricFamily(
            "trade_engine_chain_arbitrage_failures",
            "Arbitrage steps that failed (the pool kept its previous price).",
            labels=labels,
        )
        failures.add_metric(key, self.chain.arbitrage_failures)
        price = GaugeMetricFamily(
            "trade_engine_chain_pool_target_price",
            "Quote per base the last arbitrage step moved the pool to.",
            labels=labels,
        )
        price.add_metric(key, self.chain.pool_price)
        return [swaps, failures, price]
