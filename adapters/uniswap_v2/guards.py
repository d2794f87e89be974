"""What a DEX executor checks before it trades: the chain, the account, the portfolio.

Each guard raises ``RuntimeError`` with a message that names the setting to change; the
executor's start then fails (FAULTED with that reason) and nothing is sent.
"""

from __future__ import annotations

from adapters.evm.rpc import public_url
from adapters.uniswap_v2.config import LOCAL_DEV_CHAIN_ID, UniswapV2ExecutorConfig
from engine.component import Component, ComponentState
from engine.portfolio import Portfolio
from engine.risk import RiskManager


def check_chain(s: UniswapV2ExecutorConfig, node_chain_id: int, address: str | None) -> None:
    """The node is the configured chain; real funds are opted into; the key is
    ``account``'s."""
    if s.chain_id is not None and s.chain_id != node_chain_id:
        raise RuntimeError(
            f"chain id mismatch: the node at {public_url(s.rpc_url)} is chain {node_chain_id}, "
            f"but `chain_id` is {s.chain_id}: point rpc_url at a node of chain {s.chain_id}, "
            "or correct chain_id"
        )
    if not s.dry_run and node_chain_id != LOCAL_DEV_CHAIN_ID and not s.allow_real_funds:
        raise RuntimeError(
            f"refusing to send transactions on chain {node_chain_id}: without "
            "`allow_real_funds: true` an executor sends only on the local dev chain "
            f"({LOCAL_DEV_CHAIN_ID}). Set `allow_real_funds: true` to trade real funds from "
            f"{address}, or `dry_run: true` to fill on paper against this chain"
        )
    if not s.dry_run and s.account is not None and s.account != address:
        raise RuntimeError(
            f"the signing key is for {address}, but `account` is {s.account}: wrong key "
            "(ENGINE_PRIVATE_KEY / keystore_path) or wrong account"
        )


def check_portfolio(executor: Component, base_decimals: int, quote_decimals: int) -> None:
    """A portfolio holding the executor's market must agree with the chain on the tokens'
    decimals (else every amount would be off by powers of ten). For a live executor it
    must start before it (its starting balances come from the chain through it) and the
    risk manager after it (drawdown is measured from those balances)."""
    s: UniswapV2ExecutorConfig = executor.settings
    components = executor.context.components
    for portfolio in components.of_type(Portfolio):
        instrument = portfolio.instrument(s.symbol)
        if instrument is None:
            continue
        chain = {"base_decimals": base_decimals, "quote_decimals": quote_decimals}
        ours = {
            "base_decimals": instrument.base.decimals,
            "quote_decimals": instrument.quote.decimals,
        }
        if chain != ours:
            raise RuntimeError(
                f"portfolio {portfolio.name!r} has {s.symbol} with {ours}, but the tokens on "
                f"chain have {chain}: correct the portfolio's instrument"
            )
        if s.dry_run:
            continue
        if portfolio.state is ComponentState.READY:
            raise RuntimeError(
                f"portfolio {portfolio.name!r} must start before executor {executor.name!r} "
                "(it takes its starting balances from the chain): list it in the executor's "
                "depends_on"
            )
        for risk in components.of_type(RiskManager):
            if risk.state is not ComponentState.READY:
                raise RuntimeError(
                    f"risk manager {risk.name!r} must start after executor {executor.name!r} "
                    "(it measures drawdown from the chain's starting balances): list "
                    f"{executor.name!r} in its depends_on"
                )
