"""The demo's chain: anvil with Uniswap V2, a funded trading account, and an arbitrageur.

At start the component launches anvil on 127.0.0.1 (a free port), deploys WETH9, two
test tokens, the Factory and Router02, seeds the ``symbol`` pool at ``initial_price``
with ``pool_depth_quote`` quote tokens, and funds the trading account: a fresh random
one (its key lives in this process's memory only; ``ENGINE_PRIVATE_KEY`` is never
needed for a throw-away dev chain), or the account of ``keystore_path``, so a rehearsal
signs with the key that will trade for real. A ``uniswap_v2_executor`` whose ``chain``
names this component takes the addresses and the account from it.

Each ``Bar`` of ``symbol`` triggers the arbitrage step: the dev account swaps through
the real router until the pool prices the bar's close (:mod:`.arbitrage`). Executors
wait for the step of the bars before their order (:meth:`pool_settled`), so an order
trades against the pool as it stood at its bar's close. Stopping the component stops
anvil.

**Fork rehearsal** (``fork_url``): anvil forks that chain (at ``fork_block``, or its
latest block) and nothing is deployed: the component uses the forked chain's own
Uniswap V2 (``router``, ``base_token``, ``quote_token``). The trading account gets its
ETH by ``anvil_setBalance`` and its tokens by the dev account swapping ETH for them on
the forked router (the WETH path, :func:`.deployment.buy_with_eth`), so nothing is
minted. Swaps are real transactions on the fork and never reach the forked chain; the
fork keeps chain id 31337, so they would be invalid there anyway (EIP-155). There is
no arbitrage on a fork: the forked pool *is* the market (frozen at the fork block but
for the rehearsal's own swaps), and moving it to a feed's prices would take tokens the
dev account could only get by moving the same pool or by minting. Instead each bar
re-reads the pool's reserves for the risk manager. Only the fork URL's origin is ever
logged: providers put API keys in the rest.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

from eth_account import Account
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, SecretStr, field_validator, model_validator
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilOptions
from adapters.evm.keys import Signer, load_signer
from adapters.uniswap_v2.arbitrage import reserves_at_price, swap_to_price
from adapters.uniswap_v2.artifacts import pair_abi, router_abi
from adapters.uniswap_v2.deployment import (
    CALL_GAS,
    UniswapV2Deployment,
    buy_with_eth,
    deploy_uniswap_v2,
    existing_uniswap_v2,
    fund_account,
    to_base_units,
)
from engine.amm import get_amount_out
from engine.component import Component, ComponentContext, ComponentState
from engine.config import StrictModel
from engine.config_paths import PRIVATE_FILE
from engine.events import Bar
from engine.redaction import url_origin

FAR_DEADLINE = 2**40  # the arbitrageur's swaps never expire


def _checksum(value: str | None) -> str | None:
    if value is None:
        return None
    if not AsyncWeb3.is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return AsyncWeb3.to_checksum_address(value)


class LocalChainConfig(StrictModel):
    symbol: str = Field(
        pattern=r"^[^/]+/[^/]+$", description="Market `BASE/QUOTE` of the pool (bars, orders)."
    )
    initial_price: float | None = Field(
        None,
        gt=0,
        description="QUOTE per BASE when the pool is seeded (the first bar moves it); "
        "required on a fresh chain, refused on a fork (its pool has a price).",
    )
    pool_depth_quote: float = Field(
        5_000_000.0, gt=0, description="Quote tokens in the pool when it is seeded (fresh chain)."
    )
    fund_quote: float = Field(
        10_000.0,
        ge=0,
        description="Quote tokens given to the trader (on a fork: bought with the dev "
        "account's ETH on the forked router).",
    )
    fund_base: float = Field(
        0.0, ge=0, description="Base tokens given to the trader (on a fork: bought with ETH)."
    )
    fund_eth: float = Field(10.0, gt=0, description="ETH given to the trader for gas.")
    keystore_path: Annotated[Path | None, PRIVATE_FILE] = Field(
        None,
        description="Trade as the account of this encrypted keystore (password from "
        "ENGINE_KEYSTORE_PASSWORD; `trade-engine keys new`) instead of a throw-away one: a "
        "rehearsal with the key that will trade. The chain funds it; its transactions are "
        "signed for chain id 31337, so none is valid on a real network.",
    )
    arbitrage: bool | None = Field(
        None,
        description="Move the pool to each bar's close with an arbitrage swap; unset: on for "
        "a fresh chain, off on a fork (where it is refused: the forked pool is the market).",
    )
    min_move_bps: float = Field(
        1.0, ge=0, description="Skip the arbitrage when the pool is already this close (bps)."
    )
    fork_url: str | None = Field(
        None,
        min_length=1,
        description="Fork this chain's JSON-RPC endpoint (anvil --fork-url) and trade its own "
        "Uniswap V2 (`router`, `base_token`, `quote_token`) instead of deploying one; e.g. "
        "`${ENGINE_FORK_URL}`. Only its origin is logged (an API key in it stays out).",
    )
    fork_block: int | None = Field(
        None, ge=0, description="Fork at this block number; unset: the latest (`fork_url`)."
    )
    router: str | None = Field(
        None, description="UniswapV2Router02 address on the forked chain (`fork_url` only)."
    )
    base_token: str | None = Field(
        None, description="ERC-20 address of BASE on the forked chain (`fork_url` only)."
    )
    quote_token: str | None = Field(
        None, description="ERC-20 address of QUOTE on the forked chain (`fork_url` only)."
    )
    port: int = Field(0, ge=0, le=65535, description="anvil's port; 0 picks a free one.")
    block_time: float | None = Field(
        None, gt=0, description="Seconds per block; unset: a block per transaction."
    )
    start_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long anvil may take to answer (a fork first fetches its block).",
    )
    settle_timeout_seconds: float = Field(
        30.0, gt=0, description="How long an executor waits for a pending arbitrage step."
    )

    _addresses = field_validator("router", "base_token", "quote_token")(_checksum)

    @field_validator("symbol")
    @classmethod
    def _distinct(cls, value: str) -> str:
        base, quote = value.split("/")
        if base == quote:
            raise ValueError(f"base and quote must differ, got {value!r}")
        return value

    @model_validator(mode="after")
    def _fresh_or_fork(self) -> LocalChainConfig:
        addresses = {"router": self.router, "base_token": self.base_token}
        addresses["quote_token"] = self.quote_token
        if self.fork_url is None:
            given = [name for name, value in addresses.items() if value is not None]
            if self.fork_block is not None:
                given.append("fork_block")
            if given:
                raise ValueError(f"{', '.join(given)}: only with `fork_url` (a fork)")
            if self.initial_price is None:
                raise ValueError("set initial_price (the price the fresh pool is seeded at)")
            return self
        missing = [name for name, value in addresses.items() if value is None]
        if missing:
            raise ValueError(f"a fork trades its own pool: set {', '.join(missing)}")
        if self.initial_price is not None:
            raise ValueError("the forked pool has a price: remove initial_price")
        if self.arbitrage:
            raise ValueError(
                "arbitrage is for a fresh chain's pool: on a fork the pool is the market "
                "(docs/going-live.md, fork rehearsal); remove `arbitrage` or set it false"
            )
        return self

    @property
    def arbitrage_on(self) -> bool:
        return self.arbitrage if self.arbitrage is not None else self.fork_url is None


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
        self._trader: Signer | None = None
        self._trader_key: SecretStr | None = None
        if settings.keystore_path is None:
            account = Account.create()
            self._trader = Signer(account)
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

    @property
    def trader(self) -> Signer:
        """The trading account: a throw-away one, or the keystore's once started."""
        if self._trader is None:
            raise RuntimeError(f"chain {self.name!r} is not started")
        return self._trader

    def secret_values(self) -> list[SecretStr]:
        """The throw-away trader's key, for executors to scrub from any text they publish
        (a keystore's key never leaves its :class:`Signer`)."""
        return [self._trader_key] if self._trader_key is not None else []

    async def on_start(self) -> None:
        s = self.settings
        if s.keystore_path is not None:  # scrypt takes a while: off the loop
            self._trader = await asyncio.to_thread(
                load_signer, self.context.secrets, s.keystore_path
            )
        options = AnvilOptions(
            port=s.port,
            block_time=s.block_time,
            fork_url=s.fork_url,
            fork_block_number=s.fork_block,
        )
        self.anvil = await asyncio.to_thread(Anvil(options).start, s.start_timeout_seconds)
        self._w3 = w3 = AsyncWeb3(AsyncHTTPProvider(self.anvil.url))
        trader = w3.to_checksum_address(self.trader.address)
        if s.fork_url is None:
            assert s.initial_price is not None  # the config says so
            deployment = await deploy_uniswap_v2(
                w3,
                price=s.initial_price,
                base_liquidity=s.pool_depth_quote / s.initial_price,
                symbol=s.symbol,
            )
            await fund_account(
                w3,
                deployment,
                trader,
                base_amount=to_base_units(s.fund_base, deployment.base_decimals),
                quote_amount=to_base_units(s.fund_quote, deployment.quote_decimals),
                eth_wei=to_base_units(s.fund_eth, 18),
            )
        else:
            deployment = await self._fund_on_fork(w3, trader)
        self.deployment = deployment
        self._pair = w3.eth.contract(address=deployment.pair, abi=pair_abi())
        self._router = w3.eth.contract(address=deployment.router, abi=router_abi())
        self._scale = Fraction(10**deployment.quote_decimals, 10**deployment.base_decimals)
        self._reserves = await self._read_reserves()
        self.pool_price = float(Fraction(self._reserves[1], self._reserves[0]) / self._scale)
        self._market.set_pool(s.symbol, *self._reserves, get_amount_out)
        self.register_collector(_ChainCollector(self))
        self.subscribe(Bar, self._on_bar, name=f"{self.name}.pool")
        fork = {}
        if s.fork_url is not None:
            fork = {"fork": url_origin(s.fork_url), "fork_block": deployment.block_number}
        self.log.info(
            "chain.ready",
            rpc_url=self.anvil.url,
            anvil_pid=self.anvil.pid,
            chain_id=deployment.chain_id,
            **fork,
            router=deployment.router,
            pair=deployment.pair,
            base_token=deployment.base_token,
            quote_token=deployment.quote_token,
            trader=self.trader.address,
            arbitrage=s.arbitrage_on,
            deploy_seconds=round(deployment.deploy_seconds, 3),
        )

    async def _fund_on_fork(self, w3: AsyncWeb3[Any], trader: Any) -> UniswapV2Deployment:
        """The forked chain's Uniswap V2, and the trader funded: ETH set, tokens bought."""
        s = self.settings
        router, base, quote = (
            w3.to_checksum_address(str(address))  # set on a fork: the config says so
            for address in (s.router, s.base_token, s.quote_token)
        )
        deployment = await existing_uniswap_v2(
            w3, router=router, base_token=base, quote_token=quote, symbol=s.symbol
        )
        eth = to_base_units(s.fund_eth, 18)
        await w3.provider.make_request("anvil_setBalance", [trader, hex(eth)])  # type: ignore[arg-type]
        for token, amount, decimals in (
            (deployment.base_token, s.fund_base, deployment.base_decimals),
            (deployment.quote_token, s.fund_quote, deployment.quote_decimals),
        ):
            if amount:
                await buy_with_eth(w3, deployment, trader, token, to_base_units(amount, decimals))
        return deployment

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

        With arbitrage, the risk manager sizes this bar's order before the step is mined,
        so the market view gets the reserves the step will leave (same ``k``) right away.
        Without (a fork), the step re-reads the pool, which moved only by our own swaps."""
        if bar.symbol != self.settings.symbol:
            return
        if self.settings.arbitrage_on:
            base, quote = reserves_at_price(*self._reserves, Fraction(bar.close) * self._scale)
            self._market.set_pool(self.settings.symbol, base, quote, get_amount_out)
        previous = self._tail
        self._tail = asyncio.get_running_loop().create_task(self._step_after(previous, bar))

    async def _step_after(self, previous: asyncio.Task[None] | None, bar: Bar) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            if self.settings.arbitrage_on:
                await self.move_pool_to(bar.close)
            else:
                await self.read_pool()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The demo keeps going on a stale pool price: DEGRADED (so /ready says so),
            # logged when it starts failing, every failure counted in the metric.
            self.arbitrage_failures += 1
            if self.state is ComponentState.RUNNING:
                what = "arbitrage" if self.settings.arbitrage_on else "pool reads"
                self.log.error("chain.arbitrage_failed", bar=bar.correlation_id, error=repr(exc))
                self.degrade(f"{what} failing: {type(exc).__name__}")
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

    async def read_pool(self) -> None:
        """Give the market view the pool's reserves as they are now."""
        base, quote = await self._read_reserves()
        self._reserves = (base, quote)
        self.pool_price = float(Fraction(quote, base) / self._scale)
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
            "Quote per base the last arbitrage step moved the pool to (on a fork: the "
            "pool's price at the last bar).",
            labels=labels,
        )
        price.add_metric(key, self.chain.pool_price)
        return [swaps, failures, price]
