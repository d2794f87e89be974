"""Bars of a Uniswap V2 pool's own price, from ``getReserves`` and its ``Sync``/``Swap`` logs.

The pool's price is QUOTE per BASE from its reserves: read once with ``getReserves``
at start, then from every ``Sync`` event (each swap, mint or burn emits one). ``Swap``
events add their BASE amount to the bar's volume. Bars are cut on the chain's block
timestamps (``timeframe_seconds`` buckets) and published when the chain's time has
passed the bucket's end, so an interval without trades still yields a flat bar.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator
from web3 import AsyncWeb3

from adapters.evm.rpc import JsonRpc, selector
from adapters.uniswap_v2.fills import SWAP_TOPIC, SYNC_TOPIC, swap_amounts, words
from engine.clock import NANOS_PER_SECOND
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import Bar, bar_correlation_id
from engine.timeframes import timeframe_for_seconds

GET_RESERVES = selector("getReserves()")
TOKEN0 = selector("token0()")
TOKEN1 = selector("token1()")
DECIMALS = selector("decimals()")
MAX_FLAT_BARS = 1_000  # after a long gap, do not flood the bus with empty bars


class UniswapV2PoolConfig(StrictModel):
    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint (HTTP).")
    pair: str = Field(description="UniswapV2Pair address.")
    base_token: str = Field(description="ERC-20 address of the BASE token of `symbol`.")
    symbol: str = Field(
        "BASE/QUOTE",
        pattern=r"^[^/]+/[^/]+$",
        description="Market symbol `BASE/QUOTE` that orders and bars name.",
    )
    timeframe_seconds: int = Field(60, gt=0, description="Bar length in chain seconds.")
    poll_seconds: float = Field(1.0, gt=0, description="How often new logs are fetched.")
    rpc_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one RPC request.")

    @field_validator("pair", "base_token")
    @classmethod
    def _address(cls, value: str) -> str:
        if not AsyncWeb3.is_address(value):
            raise ValueError(f"not an address: {value!r}")
        return AsyncWeb3.to_checksum_address(value)


def _address_word(word: str) -> str:
    """An address returned by eth_call (one 32-byte word), lower-case."""
    return "0x" + word[-40:].lower()


@dataclass
class _OpenBar:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarAggregator:
    """OHLCV buckets of ``timeframe`` seconds from (timestamp, price, volume) ticks."""

    def __init__(self, timeframe: int, last_price: float, start: int) -> None:
        self.timeframe = timeframe
        self.last_price = last_price
        first = start - start % timeframe
        self.bar = _OpenBar(first, last_price, last_price, last_price, last_price, 0.0)

    def _close_until(self, ts: int) -> list[_OpenBar]:
        """Close the open bar and flat bars for empty buckets before ``ts``'s bucket."""
        closed: list[_OpenBar] = []
        bucket = ts - ts % self.timeframe
        while self.bar.start < bucket:
            closed.append(self.bar)
            start = self.bar.start + self.timeframe
            if len(closed) >= MAX_FLAT_BARS:
                start = bucket
            p = self.last_price
            self.bar = _OpenBar(start, p, p, p, p, 0.0)
        return closed

    def add(self, ts: int, price: float | None, volume: float = 0.0) -> list[_OpenBar]:
        """Record a tick (price None: volume only); returns the bars this closed."""
        closed = self._close_until(ts)
        bar = self.bar
        if price is not None:
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.close = price
            self.last_price = price
        bar.volume += volume
        return closed

    def advance(self, ts: int) -> list[_OpenBar]:
        """Time moved to ``ts`` with no trade; returns the bars that closed."""
        return self._close_until(ts)


class UniswapV2PoolFeed(Component):
    """Publishes `Bar`s of one pool's price, polling its logs over HTTP."""

    Config = UniswapV2PoolConfig

    def __init__(
        self,
        name: str,
        settings: UniswapV2PoolConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.timeframe = timeframe_for_seconds(settings.timeframe_seconds)
        self._task: asyncio.Task[None] | None = None
        self._block_times: dict[int, int] = {}
        self._rpc: JsonRpc | None = None
        self.bars_published = 0

    async def on_start(self) -> None:
        s = self.settings
        self.rpc = self._rpc = await JsonRpc.connect(s.rpc_url, s.rpc_timeout_seconds)
        token0 = _address_word(await self.rpc.call(s.pair, "0x" + TOKEN0.hex()))
        token1 = _address_word(await self.rpc.call(s.pair, "0x" + TOKEN1.hex()))
        base = s.base_token.lower()
        if base not in (token0, token1):
            raise RuntimeError(f"{s.base_token} is not a token of pair {s.pair}")
        self.base_is_token0 = token0 == base
        quote_token = token1 if self.base_is_token0 else token0
        self.base_decimals = int(await self.rpc.call(s.base_token, "0x" + DECIMALS.hex()), 16)
        self.quote_decimals = int(await self.rpc.call(quote_token, "0x" + DECIMALS.hex()), 16)
        head = await self._block(None)
        reserves = await self.rpc.call(s.pair, "0x" + GET_RESERVES.hex(), hex(head["number"]))
        r0, r1, _ = words(reserves)[:3]
        self.next_block = head["number"] + 1
        self.aggregator = BarAggregator(s.timeframe_seconds, self._price(r0, r1), head["timestamp"])
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}.poll")

    async def on_stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._rpc is not None:
            await self._rpc.disconnect()

    @property
    def price(self) -> float:
        """The pool's latest known price, QUOTE per BASE."""
        return self.aggregator.last_price

    def _price(self, reserve0: int, reserve1: int) -> float:
        base, quote = (reserve0, reserve1) if self.base_is_token0 else (reserve1, reserve0)
        return (quote / 10**self.quote_decimals) / (base / 10**self.base_decimals)

    async def _block(self, number: int | None) -> dict[str, int]:
        tag = "latest" if number is None else hex(number)
        block = await self.rpc.request("eth_getBlockByNumber", [tag, False])
        parsed = {"number": int(block["number"], 16), "timestamp": int(block["timestamp"], 16)}
        self._block_times[parsed["number"]] = parsed["timestamp"]
        return parsed

    async def _timestamp(self, number: int) -> int:
        if number not in self._block_times:
            await self._block(number)
        return self._block_times[number]

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
                self.recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.degrade(f"polling {self.settings.pair} failed: {type(exc).__name__}")
            await asyncio.sleep(self.settings.poll_seconds)

    async def poll_once(self) -> int:
        """Fetch logs up to the chain head, publish the bars that closed; returns how many."""
        head = await self._block(None)
        closed: list[_OpenBar] = []
        if head["number"] >= self.next_block:
            logs = await self.rpc.request(
                "eth_getLogs",
                [
                    {
                        "address": self.settings.pair,
                        "fromBlock": hex(self.next_block),
                        "toBlock": hex(head["number"]),
                        "topics": [[SYNC_TOPIC, SWAP_TOPIC]],
                    }
                ],
            )
            for entry in logs:
                closed += await self._on_log(entry)
            self.next_block = head["number"] + 1
        closed += self.aggregator.advance(head["timestamp"])
        for bar in closed:
            await self._publish(bar)
        self._block_times = {n: t for n, t in self._block_times.items() if n >= head["number"]}
        return len(closed)

    async def _on_log(self, entry: dict[str, Any]) -> list[_OpenBar]:
        ts = await self._timestamp(int(entry["blockNumber"], 16))
        topic = entry["topics"][0].lower()
        values = words(entry["data"])
        if topic == SYNC_TOPIC:
            return self.aggregator.add(ts, self._price(values[0], values[1]))
        swap = swap_amounts(values, self.base_is_token0)
        return self.aggregator.add(ts, None, swap.base_amount / 10**self.base_decimals)

    async def _publish(self, bar: _OpenBar) -> None:
        close_ns = (bar.start + self.settings.timeframe_seconds) * NANOS_PER_SECOND
        await self.bus.publish(
            Bar(
                ts_event=close_ns,
                ts_init=self.clock.timestamp_ns(),
                correlation_id=bar_correlation_id(self.settings.symbol, self.timeframe, close_ns),
                symbol=self.settings.symbol,
                timeframe=self.timeframe,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
            )
        )
        self.bars_published += 1
