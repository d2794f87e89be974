"""Settings of the Uniswap V2 executor (the `uniswap_v2_executor` component type)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from web3 import AsyncWeb3

from engine.config import StrictModel
from engine.config_paths import EXISTING_FILE, NEW_FILE

LOCAL_DEV_CHAIN_ID = 31337  # anvil's and hardhat's default: test ETH only


def _checksum(value: str | None) -> str | None:
    if value is None or value == "":  # `${VAR:-}` left unset
        return None
    if not AsyncWeb3.is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return AsyncWeb3.to_checksum_address(value)


class UniswapV2ExecutorConfig(StrictModel):
    chain: str | None = Field(
        None,
        description="Name of a `local_chain` component to trade on: its RPC URL, router, "
        "tokens and funded dev account replace `rpc_url`, the addresses and the key. List it "
        "in `depends_on`.",
    )
    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint (HTTP).")
    chain_id: int | None = Field(
        None,
        description="The chain this config is for: the executor refuses to start when the "
        "node at `rpc_url` is another chain (e.g. 1: Ethereum mainnet).",
    )
    dry_run: bool = Field(
        False,
        description="Read the real pool, quote with the router's `getAmountsOut`, build and "
        "estimate the swap, and fill on paper at exactly that output; never sign or send "
        "anything (no key is loaded). Gas comes from `eth_estimateGas` from `account`; when "
        "that cannot run (no account, or it lacks the tokens or the router's allowance) "
        "the fill assumes `dry_run_gas` and its `detail` says why.",
    )
    account: str | None = Field(
        None,
        description="The trading account's address. A dry run estimates gas from it and "
        "reports its balances (no key needed); a live executor refuses to start when its "
        "key is for another address. Unset in a dry run: none (the local chain's account "
        "with `chain`).",
    )
    dry_run_gas: int = Field(
        130_000,
        gt=0,
        description="Gas a dry-run fill assumes when the swap cannot be estimated for "
        "`account` (a Uniswap V2 token swap uses about 100k-130k).",
    )
    allow_real_funds: bool = Field(
        False,
        description="Send transactions on a chain other than the local dev chain (31337). "
        "Without it a non-dry-run executor refuses to start there: real funds need this "
        "explicit opt-in.",
    )
    pool_poll_seconds: float = Field(
        5.0,
        ge=0,
        description="How often the pool's reserves and the base fee are read into the "
        "market view, for the risk manager's price-impact, slippage and gas checks; 0: "
        "never (those checks are then skipped). Not with `chain`, which reports its pool.",
    )
    reconcile_seconds: float = Field(
        60.0,
        ge=0,
        description="How often the account's token balances are read from the chain and "
        "compared with the portfolio's (besides at start and after every fill); 0: only "
        "then. Not in a dry run, whose portfolio holds paper money.",
    )
    router: str | None = Field(None, description="UniswapV2Router02 address (unless `chain`).")
    base_token: str | None = Field(
        None, description="ERC-20 address of the BASE token of `symbol` (unless `chain`)."
    )
    quote_token: str | None = Field(
        None, description="ERC-20 address of the QUOTE token of `symbol` (unless `chain`)."
    )
    symbol: str = Field(
        "BASE/QUOTE",
        pattern=r"^[^/]+/[^/]+$",
        description="Market symbol `BASE/QUOTE` that orders and bars name.",
    )
    keystore_path: Annotated[Path | None, EXISTING_FILE] = Field(
        None,
        description="Encrypted keystore file (password from ENGINE_KEYSTORE_PASSWORD); "
        "without it the key comes from ENGINE_PRIVATE_KEY.",
    )
    journal_path: Annotated[str | None, NEW_FILE] = Field(
        None,
        description="Event journal to reconcile at start: swaps journalled as submitted but "
        "never settled are looked up on chain (filled, failed or still pending), never re-sent.",
    )
    deadline_seconds: int = Field(120, gt=0, description="Swap deadline after submission.")
    deadline_clock: Literal["auto", "engine", "chain"] = Field(
        "auto",
        description="Count the deadline from the engine's clock or from the chain's latest "
        "block time; `auto`: the chain's under a simulated clock (a replay's clock is years "
        "behind the chain's), the engine's otherwise.",
    )
    priority_fee_gwei: float = Field(1.0, ge=0, description="EIP-1559 tip.")
    max_fee_gwei: float = Field(500.0, gt=0, description="Cap on maxFeePerGas.")
    gas_padding: float = Field(
        1.25, ge=1.0, le=3.0, description="Gas limit = estimate x this + `gas_extra`."
    )
    gas_extra: int = Field(
        50_000,
        ge=0,
        description="Added to every swap's gas limit: the pair writes its price accumulators "
        "when the block timestamp moves on, which eth_estimateGas (run on the parent block's "
        "timestamp) does not see; the first write costs about 44k gas. Unused gas is not paid.",
    )
    rpc_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one RPC request.")
    quote_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="An order not quoted and signed within this long (a dead node, a hung "
        "pool step, a first approval, the nonce lock held by a stuck send) fails with "
        "`QUOTE_TIMEOUT`, so risk stops counting it as pending. A signed swap is journalled "
        "and followed to its outcome: this deadline never fails it.",
    )
    receipt_timeout_seconds: float = Field(
        60.0, gt=0, description="Wait this long for a receipt, then the order is PENDING."
    )
    receipt_poll_seconds: float = Field(0.5, gt=0, description="Receipt polling interval.")
    pending_poll_seconds: float = Field(
        5.0, gt=0, description="How often a PENDING order's transaction is re-checked."
    )
    replace_after_seconds: float = Field(
        120.0, ge=0, description="Re-send a stuck transaction (same nonce, higher fee); 0: never."
    )
    replacement_fee_bump: float = Field(
        1.125, ge=1.1, le=3.0, description="Fee multiplier of a replacement."
    )
    health_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the node is asked for its block number (for /ready); no answer "
        "within half of it (or `rpc_timeout_seconds` if shorter) counts as down, so /ready "
        "shows a dead node within two intervals.",
    )
    fee_ttl_seconds: float = Field(1.0, ge=0, description="Reuse the base fee this long.")

    _addresses = field_validator("router", "base_token", "quote_token", "account")(_checksum)

    @model_validator(mode="after")
    def _venue(self) -> UniswapV2ExecutorConfig:
        addresses = {"router": self.router, "base_token": self.base_token}
        addresses["quote_token"] = self.quote_token
        if self.chain is None:
            missing = [field for field, value in addresses.items() if value is None]
            if missing:
                raise ValueError(f"set {', '.join(missing)}, or `chain` (a local_chain component)")
        elif any(value is not None for value in addresses.values()):
            raise ValueError("`chain` provides the addresses: remove router/base_token/quote_token")
        return self
