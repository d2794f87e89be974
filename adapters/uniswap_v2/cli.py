"""``trade-engine chain up``: a local chain with Uniswap V2 deployed, until Ctrl-C.

Starts anvil on 127.0.0.1, deploys WETH9, two test tokens, the Factory and Router02,
seeds the BASE/QUOTE pool at ``--price``, optionally funds an address with test
tokens and ETH, prints the addresses (JSON with ``--json``) and waits. Ctrl-C or
SIGTERM stops anvil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from decimal import Decimal
from types import FrameType
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.anvil import Anvil, AnvilError, AnvilOptions
from adapters.uniswap_v2.artifacts import ArtifactError
from adapters.uniswap_v2.deployment import UniswapV2Deployment, deploy_uniswap_v2, fund_account

EXIT_OK, EXIT_FAILURE = 0, 1


def register(commands: Any) -> None:
    chain = commands.add_parser("chain", help="local dev chain with Uniswap V2 (anvil)")
    sub = chain.add_subparsers(dest="chain_command", required=True)
    up = sub.add_parser("up", help="start anvil, deploy Uniswap V2, print addresses, wait")
    up.add_argument("--port", type=int, default=8545, help="0 picks a free port (default 8545)")
    up.add_argument("--price", type=Decimal, default=Decimal(1000), help="QUOTE per BASE")
    up.add_argument("--liquidity", type=Decimal, default=Decimal(1000), help="BASE in the pool")
    up.add_argument("--block-time", type=float, help="seconds per block (default: automine)")
    up.add_argument(
        "--fund",
        metavar="ADDRESS",
        action="append",
        default=[],
        help="give ADDRESS 1000 BASE, 1,000,000 QUOTE and 100 ETH (repeatable)",
    )
    up.add_argument("--json", action="store_true", help="print one JSON line")
    up.set_defaults(handler=cmd_chain_up)


async def _deploy(url: str, args: argparse.Namespace) -> UniswapV2Deployment:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        deployment = await deploy_uniswap_v2(w3, price=args.price, base_liquidity=args.liquidity)
        for address in args.fund:
            await fund_account(
                w3,
                deployment,
                w3.to_checksum_address(address),
                base_amount=1_000 * 10**deployment.base_decimals,
                quote_amount=1_000_000 * 10**deployment.quote_decimals,
                eth_wei=100 * 10**18,
            )
        return deployment
    finally:
        await w3.provider.disconnect()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_chain_up(args: argparse.Namespace) -> int:
    anvil = Anvil(AnvilOptions(port=args.port, block_time=args.block_time))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        anvil.start()
        deployment = asyncio.run(_deploy(anvil.url, args))
        info = {"rpc_url": anvil.url, "anvil_pid": anvil.pid, **deployment.as_dict()}
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            for key, value in info.items():
                print(f"{key:16} {value}")
            print("chain is up; Ctrl-C stops it", flush=True)
        while anvil.proc is not None and anvil.proc.poll() is None:
            time.sleep(0.2)
        print("anvil exited unexpectedly", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except (AnvilError, ArtifactError) as exc:
        print(f"chain up: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        anvil.stop()
        signal.signal(signal.SIGTERM, previous)
