"""The risk manager's settings: every limit, with what it means and its default."""

from __future__ import annotations

from pydantic import Field, model_validator

from engine.config import StrictModel


class RiskConfig(StrictModel):
    portfolio: str = Field(
        "portfolio", min_length=1, description="Name of the portfolio component to read."
    )
    order_notional_quote: float = Field(
        1_000.0, gt=0, description="Quote tokens a BUY spends (less if less is free)."
    )
    sell_fraction: float = Field(
        1.0, gt=0, le=1, description="Share of the free base position a SELL sells."
    )
    max_order_notional_quote: float = Field(
        5_000.0,
        gt=0,
        description="Largest order, in quote tokens: a BUY above it is rejected, a SELL is "
        "capped at it.",
    )
    min_order_notional_quote: float = Field(
        10.0, ge=0, description="Smallest order, in quote tokens; smaller ones are rejected."
    )
    max_position_base: float | None = Field(
        None, gt=0, description="Largest base position after a BUY, in base tokens; unset: none."
    )
    max_position_quote: float | None = Field(
        10_000.0,
        gt=0,
        description="Largest base position after a BUY, valued at the last price, in quote "
        "tokens; unset: none.",
    )
    max_orders_per_window: int = Field(
        10, ge=1, description="Orders approved within `rate_window_seconds` at most."
    )
    rate_window_seconds: float = Field(
        60.0, gt=0, description="Rolling window of the order rate limit, in clock seconds."
    )
    max_bar_age_seconds: float = Field(
        7_200.0,
        gt=0,
        description="Reject when the symbol's last bar was received longer ago than this "
        "(engine clock); two bars of the timeframe is a good value.",
    )
    max_candle_age_seconds: float | None = Field(
        None,
        gt=0,
        description="Reject (STALE_MARKET_DATA) a signal on a candle that closed longer ago "
        "than this (its close time against the engine clock): a live feed's warm-up "
        "history then computes features but is never traded. Unset: none (a replay of "
        "history on a live clock trades old candles on purpose).",
    )
    slippage_tolerance_bps: int = Field(
        50,
        ge=0,
        lt=10_000,
        description="Put on each order: the executor's minimum output is its quote at "
        "submission less this.",
    )
    max_slippage_bps: float = Field(
        100.0,
        ge=0,
        description="Reject when the expected execution price (pool maths, fee included) is "
        "worse than the last bar close by more than this.",
    )
    max_price_impact_bps: float = Field(
        100.0,
        ge=0,
        description="Reject when the swap moves the execution price this far from the pool's "
        "mid price (fee included, so at least 30 for Uniswap V2).",
    )
    require_pool_reserves: bool = Field(
        False,
        description="Reject (NO_POOL_RESERVES) when the pool's reserves are unknown, instead "
        "of skipping the slippage and price-impact checks.",
    )
    max_daily_loss_fraction: float | None = Field(
        0.05,
        gt=0,
        le=1,
        description="Loss since the start of the UTC day, as a fraction of that day's "
        "starting equity, that switches to REDUCING until the next day; unset: none.",
    )
    max_drawdown_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Drawdown from peak equity that HALTS trading until an operator resumes.",
    )
    max_gas_price_gwei: float | None = Field(
        200.0, gt=0, description="Reject while the gas price is above this; unset: no cap."
    )

    @model_validator(mode="after")
    def _order_bounds(self) -> RiskConfig:
        if self.min_order_notional_quote > self.max_order_notional_quote:
            raise ValueError(
                f"min_order_notional_quote ({self.min_order_notional_quote}) is above "
                f"max_order_notional_quote ({self.max_order_notional_quote})"
            )
        return self
