"""A thin JSON-RPC layer over ``AsyncHTTPProvider`` for the executor's hot path.

``AsyncWeb3.eth`` runs every call through middleware that, among other things, asks
the node for ``eth_chainId`` before each ``eth_call``/``eth_estimateGas``, and its
contract helpers re-parse the ABI on every encode (about 4 ms). The executor sends a
handful of known requests, so it encodes them with ``eth_abi`` and sends them with
``provider.make_request``: one HTTP request per call, over a keep-alive session
(web3 8's default async session closes the connection after every request).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from eth_abi import decode, encode
from eth_utils import keccak
from web3 import AsyncHTTPProvider

ERROR_SELECTOR = "08c379a0"  # Error(string)


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


GET_AMOUNTS_OUT = selector("getAmountsOut(uint256,address[])")
SWAP_EXACT_TOKENS = selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)")
BALANCE_OF = selector("balanceOf(address)")
ALLOWANCE = selector("allowance(address,address)")
APPROVE = selector("approve(address,uint256)")


def public_url(url: str) -> str:
    """``url`` without what may carry an API key (user info, path, query): hosted RPC
    endpoints put the key there (``https://mainnet.infura.io/v3/<key>``), so logs and
    messages name only the scheme, host and port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    hidden = "/…" if parts.path.strip("/") or parts.query or parts.username else ""
    return f"{parts.scheme}://{host}{hidden}" if parts.scheme else "<rpc url>"


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` :func:`public_url` hides, for a redactor (empty if none)."""
    parts = urlsplit(url)
    return [p for p in (parts.path.strip("/"), parts.query, parts.username, parts.password) if p]


class CancelSafeHTTPProvider(AsyncHTTPProvider):
    """web3's provider, safe to cancel a request on.

    Every request looks its session up in web3's process-wide cache under a
    ``threading.Lock`` taken in a worker thread (``web3._utils.async_caching.async_lock``).
    Cancelled while that thread waits, the request leaves: the thread then takes the lock
    and nobody releases it, and every later request of every provider in the process
    waits for ever (seen: an executor stopped mid-poll wedged the next one). So the
    request itself is shielded: a cancelled caller stops waiting at once, the request
    runs on to its answer or its timeout and releases the lock; :meth:`settle` waits for
    such requests (before the loop that runs them may close)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: set[asyncio.Future[Any]] = set()

    async def make_request(self, method: Any, params: Any) -> Any:
        request = asyncio.ensure_future(super().make_request(method, params))
        self._in_flight.add(request)
        request.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(request)

    async def settle(self) -> None:
        """Wait for every request still running (each ends by its timeout at the latest)."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)


def calldata(function_selector: bytes, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_selector + encode(types, args)).hex()


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RevertError(RpcError):
    """The call reverted; ``message`` carries the reason when the node gave one."""


def revert_message(message: str, data: Any) -> str:
    """The node's revert message, or the ``Error(string)`` decoded from its data."""
    if ":" in message or not isinstance(data, str):
        return message
    raw = data.removeprefix("0x")
    if raw.startswith(ERROR_SELECTOR):
        try:
            (reason,) = decode(["string"], bytes.fromhex(raw[8:]))
            return f"execution reverted: {reason}"
        except Exception:
            return message
    return message


def _is_revert(code: int, message: str) -> bool:
    return code == 3 or "revert" in message.lower()


class JsonRpc:
    """``request(method, params)`` → result, raising RpcError/RevertError."""

    def __init__(self, provider: AsyncHTTPProvider) -> None:
        self.provider = provider

    @classmethod
    async def connect(cls, url: str, timeout_seconds: float) -> JsonRpc:
        """A provider for ``url`` with a keep-alive session, a per-request timeout and no
        automatic retries (call inside the running loop; close with ``disconnect``)."""
        timeout = ClientTimeout(total=timeout_seconds)
        provider = CancelSafeHTTPProvider(
            url,
            # web3 puts its own 30 s timeout on every request unless given one here.
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
        )
        session = ClientSession(
            raise_for_status=True, connector=TCPConnector(limit=64), timeout=timeout
        )
        await provider.cache_async_session(session)
        return cls(provider)

    async def disconnect(self) -> None:
        """Close the session once the requests still running have ended."""
        if isinstance(self.provider, CancelSafeHTTPProvider):
            await self.provider.settle()
        await self.provider.disconnect()

    async def request(self, method: str, params: list[Any]) -> Any:
        reply = await self.provider.make_request(method, params)  # type: ignore[arg-type]
        error = reply.get("error")
        if error:
            code = int(error.get("code", 0)) if isinstance(error, dict) else 0
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            data = error.get("data") if isinstance(error, dict) else None
            if _is_revert(code, message):
                raise RevertError(code, revert_message(message, data), data)
            raise RpcError(code, message, data)
        return reply.get("result")

    async def call(self, to: str, data: str, block: str | int = "latest", **fields: Any) -> str:
        tag = hex(block) if isinstance(block, int) else block
        return str(await self.request("eth_call", [{"to": to, "data": data, **fields}, tag]))

    async def estimate_gas(self, sender: str, to: str, data: str) -> int:
        return int(
            await self.request("eth_estimateGas", [{"from": sender, "to": to, "data": data}]), 16
        )

    async def transaction_count(self, address: str, block: str = "pending") -> int:
        return int(await self.request("eth_getTransactionCount", [address, block]), 16)

    async def latest_base_fee_and_time(self) -> tuple[int, int]:
        """The latest block's base fee (wei) and timestamp (seconds)."""
        block = await self.request("eth_getBlockByNumber", ["latest", False])
        return int(block.get("baseFeePerGas") or "0x0", 16), int(block["timestamp"], 16)

    async def send_raw(self, raw: bytes) -> str:
        return str(await self.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return await self.request("eth_getTransactionByHash", [tx_hash])  # type: ignore[no-any-return]

    async def get_amounts_out(self, router: str, amount_in: int, path: list[str]) -> list[int]:
        result = await self.call(
            router, calldata(GET_AMOUNTS_OUT, ["uint256", "address[]"], [amount_in, path])
        )
        (amounts,) = decode(["uint256[]"], bytes.fromhex(result.removeprefix("0x")))
        return list(amounts)

    async def erc20_uint(self, token: str, function_selector: bytes, *addresses: str) -> int:
        data = calldata(function_selector, ["address"] * len(addresses), list(addresses))
        return int(await self.call(token, data), 16)
