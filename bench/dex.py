"""DEX execution throughput: our executor vs a minimal raw web3 script, same chain, same run.

Starts anvil (automine), deploys Uniswap V2, then for each of ``--rounds`` rounds sends
``--swaps`` swaps concurrently (alternating BUY and SELL) two ways:

* **executor**: ``OrderRequest``s published on the bus; the executor quotes, estimates
  gas, signs, sends, awaits the receipt and publishes ``OrderFilled``. Latency is
  publish → ``OrderFilled``.
* **raw web3**: the minimal script: nonces assigned up front, fixed gas, no quote
  (``amountOutMin`` 0), sign, ``send_raw_transaction``,
  ``wait_for_transaction_receipt``.
  Latency is sign → receipt.

Both use a keep-alive HTTP session and poll receipts every ``--poll`` seconds. Prints
swaps/s and latency p50/p99 (best round by throughput) and the executor's throughput
as a share of the raw script's.

    .venv/bin/python bench/dex.py            # 200 swaps, 3 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession
from eth_account import Account
from machine import describe_machine
from prometheus_client import CollectorRegistry
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil
from adapters.uniswap_v2.artifacts import erc20_abi, router_abi
from adapters.uniswap_v2.deployment import MAX_UINT256, deploy_uniswap_v2, fund_account
from adapters.uniswap_v2.executor import UniswapV2Executor, UniswapV2ExecutorConfig
from engine.bus import EventBus
from engine.clock import LiveClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.events import OrderFailed, OrderFilled, OrderRequest

TOKEN = 10**18


@dataclass
class Result:
    name: str
    swaps_per_s: float
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(name: str, n: int, elapsed: float, latencies: list[float]) -> Result:
    return Result(
        name, n / elapsed, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
    )


async def funded_account(w3: AsyncWeb3[Any], deployment: Any) -> Any:
    account = Account.create()
    await fund_account(
        w3,
        deployment,
        account.address,
        base_amount=10_000 * TOKEN,
        quote_amount=10**8 * TOKEN,
        eth_wei=10**4 * TOKEN,
    )
    return account


async def run_executor(url: str, deployment: Any, account: Any, n: int, poll: float) -> Result:
    bus = EventBus()
    settings = UniswapV2ExecutorConfig(
        rpc_url=url,
        router=deployment.router,
        base_token=deployment.base_token,
        quote_token=deployment.quote_token,
        receipt_poll_seconds=poll,
    )
    context = ComponentContext(
        bus=bus,
        clock=LiveClock(),
        metrics_registry=CollectorRegistry(),
        secrets=Secrets.from_env({"ENGINE_PRIVATE_KEY": "0x" + bytes(account.key).hex()}),
    )
    executor = UniswapV2Executor("dex", settings, context)
    await executor.start()
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    failures: list[OrderFailed] = []
    done = asyncio.Event()
    warmed = asyncio.Event()

    def on_result(event: OrderFilled | OrderFailed) -> None:
        finished[event.order_id] = time.perf_counter()
        if isinstance(event, OrderFailed):
            failures.append(event)
        if len(finished) == len(started) == 2:
            warmed.set()
        if len(finished) == len(started) and len(started) >= n:
            done.set()

    bus.subscribe(OrderFilled, on_result)
    bus.subscribe(OrderFailed, on_result)

    def request(i: int) -> OrderRequest:
        side = "BUY" if i % 2 else "SELL"
        amount = 20 * TOKEN if side == "BUY" else TOKEN // 50
        return OrderRequest(
            ts_event=0,
            ts_init=0,
            order_id=f"{id(started)}-{i}",
            strategy_id="bench",
            symbol="BASE/QUOTE",
            side=side,
            amount_in=amount,
        )

    # Warm up: approvals for both tokens, connection pool.
    warm = [request(-1), request(-2)]
    for r in warm:
        started[r.order_id] = time.perf_counter()
        bus.publish_nowait(r)
    await asyncio.wait_for(warmed.wait(), 30)
    started.clear()
    finished.clear()

    requests = [request(i) for i in range(n)]
    t0 = time.perf_counter()
    for r in requests:
        started[r.order_id] = time.perf_counter()
        bus.publish_nowait(r)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = max(finished.values()) - t0
    await executor.stop()
    if failures:
        raise RuntimeError(f"{len(failures)} executor orders failed, e.g. {failures[0]}")
    return summarise("executor", n, elapsed, [finished[k] - started[k] for k in started])


async def run_raw(url: str, deployment: Any, account: Any, n: int, poll: float) -> Result:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    # The same keep-alive session as the executor (web3 8's default closes connections).
    await w3.provider.cache_async_session(ClientSession(raise_for_status=True))
    router = w3.eth.contract(address=deployment.router, abi=router_abi())
    chain_id = await w3.eth.chain_id
    for token in (deployment.base_token, deployment.quote_token):
        contract = w3.eth.contract(address=token, abi=erc20_abi())
        tx = await contract.functions.approve(deployment.router, MAX_UINT256).build_transaction(
            {"from": account.address, "nonce": await w3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        await w3.eth.wait_for_transaction_receipt(
            await w3.eth.send_raw_transaction(signed.raw_transaction)
        )
    nonce0 = await w3.eth.get_transaction_count(account.address)
    base_fee = (await w3.eth.get_block("latest"))["baseFeePerGas"]
    deadline = int(time.time()) + 600
    latencies: list[float] = []

    async def swap(i: int) -> None:
        started = time.perf_counter()
        buy = i % 2 == 1
        path = (
            [deployment.quote_token, deployment.base_token]
            if buy
            else [deployment.base_token, deployment.quote_token]
        )
        amount = 20 * TOKEN if buy else TOKEN // 50
        data = router.encode_abi(
            "swapExactTokensForTokens", args=[amount, 0, path, account.address, deadline]
        )
        tx = {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce0 + i,
            "to": deployment.router,
            "data": data,
            "value": 0,
            "gas": 250_000,
            "maxFeePerGas": 4 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        signed = account.sign_transaction(tx)
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=poll)
        if receipt["status"] != 1:
            raise RuntimeError(f"raw swap {i} reverted")
        latencies.append(time.perf_counter() - started)

    t0 = time.perf_counter()
    await asyncio.gather(*(swap(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await w3.provider.disconnect()
    return summarise("raw web3", n, elapsed, latencies)


async def main(n: int, rounds: int, poll: float) -> None:
    print(f"# DEX execution: {n} concurrent swaps, anvil 1.7.1 automine, receipt poll {poll}s")
    print(f"# {describe_machine()}")
    async with Anvil() as anvil:
        w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
        deployment = await deploy_uniswap_v2(w3, price=1000, base_liquidity=100_000)
        print(
            f"# anvil start {anvil.startup_seconds * 1e3:.0f} ms, "
            f"Uniswap V2 deploy + liquidity {deployment.deploy_seconds * 1e3:.0f} ms"
        )
        best: dict[str, Result] = {}
        for _ in range(rounds):
            for runner in (run_executor, run_raw):
                account = await funded_account(w3, deployment)
                result = await runner(anvil.url, deployment, account, n, poll)
                if result.name not in best or result.swaps_per_s > best[result.name].swaps_per_s:
                    best[result.name] = result
        await w3.provider.disconnect()
    print(f"{'':10} {'swaps/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for r in best.values():
        print(f"{r.name:10} {r.swaps_per_s:9.1f} {r.p50_ms:9.1f} {r.p99_ms:9.1f}")
    ratio = best["executor"].swaps_per_s / best["raw web3"].swaps_per_s
    print(f"executor / raw web3 throughput: {ratio:.0%} (goal >= 80%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.02)
    args = parser.parse_args()
    asyncio.run(main(args.swaps, args.rounds, args.poll))
