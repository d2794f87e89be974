"""Helpers for tests on a real anvil chain with the real Uniswap V2 contracts.

The fixtures built on them are in :mod:`tests.chain_fixtures` (load it with
``pytest_plugins``; importing it directly would skip pytest's assert rewriting).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, web
from eth_account import Account
from eth_utils import keccak
from prometheus_client import CollectorRegistry
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilOptions
from adapters.uniswap_v2.artifacts import router_abi
from adapters.uniswap_v2.deployment import UniswapV2Deployment, deploy_uniswap_v2, fund_account
from adapters.uniswap_v2.executor import UniswapV2Executor, UniswapV2ExecutorConfig
from engine.bus import EventBus
from engine.events import Event, OrderFailed, OrderFilled, OrderRequest, Side
from tests import factories

TOKEN = 10**18
PRICE = 1000  # QUOTE per BASE when the pool is deployed


@dataclass
class Chain:
    anvil: Anvil
    deployment: UniswapV2Deployment

    @property
    def url(self) -> str:
        return self.anvil.url


@dataclass
class Trader:
    address: str
    private_key: str


async def _deploy(url: str, **kwargs: Any) -> UniswapV2Deployment:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        return await deploy_uniswap_v2(w3, **kwargs)
    finally:
        await w3.provider.disconnect()


def start_chain(options: AnvilOptions | None = None, **deploy_kwargs: Any) -> Chain:
    anvil = Anvil(options).start()
    try:
        deployment = asyncio.run(
            _deploy(anvil.url, price=PRICE, base_liquidity=10_000, **deploy_kwargs)
        )
    except BaseException:
        anvil.stop()
        raise
    return Chain(anvil, deployment)


async def new_trader(
    chain: Chain, base: int = 1_000 * TOKEN, quote: int = 1_000_000 * TOKEN, eth: int = 100 * TOKEN
) -> Trader:
    """A fresh random account funded with test tokens and ETH."""
    account = Account.create()
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        await fund_account(
            w3, chain.deployment, account.address, base_amount=base, quote_amount=quote, eth_wei=eth
        )
    finally:
        await w3.provider.disconnect()
    return Trader(account.address, "0x" + bytes(account.key).hex())


class Recorder:
    """Collects every event published on a bus."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(Event, self.events.append, name="recorder")

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Any, within: float = 10.0) -> Any:
        """The first recorded event for which ``predicate(event)`` is true (waiting)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching event within {within}s: {self.events[-5:]}")
            await asyncio.sleep(0.005)


def executor_config(chain: Chain, **overrides: Any) -> UniswapV2ExecutorConfig:
    d = chain.deployment
    settings: dict[str, Any] = {
        "rpc_url": chain.url,
        "chain_id": d.chain_id,
        "router": d.router,
        "base_token": d.base_token,
        "quote_token": d.quote_token,
        "receipt_poll_seconds": 0.02,
        "receipt_timeout_seconds": 10,
        "pending_poll_seconds": 0.2,
    }
    settings.update(overrides)
    return UniswapV2ExecutorConfig.model_validate(settings)


@dataclass
class ExecutorHarness:
    executor: UniswapV2Executor
    bus: EventBus
    recorder: Recorder
    registry: CollectorRegistry


_ids = itertools.count()


def order(side: Side, amount_in: int, **kwargs: Any) -> OrderRequest:
    """An order on the deployed BASE/QUOTE pair, with an id no other order here has."""
    order_id = f"o{next(_ids)}"
    return factories.order(
        side, amount_in, ts=0, order_id=order_id, strategy_id="test", symbol="BASE/QUOTE", **kwargs
    )


async def quote(chain: Chain, side: str, amount_in: int) -> int:
    d = chain.deployment
    path = [d.quote_token, d.base_token] if side == "BUY" else [d.base_token, d.quote_token]
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        router = w3.eth.contract(address=d.router, abi=router_abi())
        return (await router.functions.getAmountsOut(amount_in, path).call())[-1]
    finally:
        await w3.provider.disconnect()


async def outcome(harness: ExecutorHarness, order_id: str, within: float = 15.0) -> Any:
    return await harness.recorder.wait_for(
        lambda e: isinstance(e, OrderFilled | OrderFailed) and e.order_id == order_id, within
    )


Intercept = Callable[[str, list[Any]], Awaitable[bool]]


def raw_tx_hash(raw_hex: str) -> str:
    """The hash of a signed transaction, as ``eth_sendRawTransaction`` carries it."""
    return "0x" + keccak(bytes.fromhex(raw_hex.removeprefix("0x"))).hex()


class RpcProxy:
    """A JSON-RPC proxy on loopback in front of a node.

    ``intercept(method, params)`` sees every single (non-batch) request before it is
    forwarded, and returns False to swallow it: the node never sees it, and the caller
    gets no answer for ``hold_seconds`` (past its timeout), as if the request were lost.
    It answers on ``path`` (a provider's URL carries an API key there).
    """

    def __init__(
        self, upstream: str, intercept: Intercept, hold_seconds: float = 1.0, path: str = "/"
    ) -> None:
        self.upstream = upstream
        self.intercept = intercept
        self.hold_seconds = hold_seconds
        self.path = path
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(self.path, self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = ClientSession()
        self.url = f"http://127.0.0.1:{port}{self.path.rstrip('/')}"
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = await request.json()
        if isinstance(message, dict) and not await self.intercept(
            message["method"], message.get("params") or []
        ):
            await asyncio.sleep(self.hold_seconds)
            return web.Response(status=502)
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        async with self._session.post(self.upstream, data=body, headers=headers) as reply:
            return web.Response(body=await reply.read(), content_type="application/json")
