"""Uniswap V2 contract artifacts (ABI and bytecode), read from node_modules at run time.

The bytecode is GPL-licensed: it is never copied into this repository, only loaded
from the npm packages ``@uniswap/v2-core@1.0.1`` and ``@uniswap/v2-periphery@1.1.0-beta.0``
that ``make install`` puts in ``node_modules``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.evm.anvil import NODE_MODULES

CORE = "@uniswap/v2-core"
PERIPHERY = "@uniswap/v2-periphery"


class ArtifactError(RuntimeError):
    """An artifact file is missing (npm packages not installed) or malformed."""


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load_artifact(package: str, name: str) -> Artifact:
    """``build/<name>.json`` of an npm package, e.g. ``load_artifact(CORE, "UniswapV2Pair")``."""
    path = NODE_MODULES / package / "build" / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path} not found: the npm packages are not installed; "
            "run `make install` (or `npm ci`) in the repository root"
        ) from None
    bytecode = data.get("bytecode") or data.get("evm", {}).get("bytecode", {}).get("object", "")
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return Artifact(name, data["abi"], bytecode)


def abi(package: str, name: str) -> list[dict[str, Any]]:
    return load_artifact(package, name).abi


def pair_abi() -> list[dict[str, Any]]:
    return abi(CORE, "UniswapV2Pair")


def router_abi() -> list[dict[str, Any]]:
    return abi(PERIPHERY, "UniswapV2Router02")


def erc20_abi() -> list[dict[str, Any]]:
    return abi(PERIPHERY, "ERC20")
