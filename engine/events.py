"""Every event type the engine publishes, in one place.

Events are immutable msgspec structs: slotted, cheap to create, and serialisable to
JSON or MessagePack with a type tag, so the journal can store any of them and read
them back as the right class. Timestamps are integer nanoseconds since the Unix epoch
(UTC): ``ts_event`` is when the thing happened, ``ts_init`` when the engine created
the object. ``correlation_id`` follows one bar from market data to fill (see
:func:`bar_correlation_id`). ``seq`` is stamped by the bus when the event is published
(0 until then).

On-chain amounts are integers in the token's base units.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["BUY", "SELL"]
Action = Literal["BUY", "SELL", "HOLD"]
Confidence = Literal["high", "medium", "low"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every event; subscribing to ``Event`` receives everything."""

    ts_event: int
    ts_init: int
    correlation_id: str = ""
    seq: int = 0


class Heartbeat(Event, frozen=True, kw_only=True, tag=True):
    """Published on a timer to show the loop and the bus are alive."""

    count: int


class Bar(Event, frozen=True, kw_only=True, tag=True):
    """One closed OHLCV candle; ``ts_event`` is the candle's close time."""

    symbol: str
    timeframe: str
    open: float
    high: float
    low: float
    close: float
    volume: float


def bar_correlation_id(symbol: str, timeframe: str, close_ns: int) -> str:
    """The id every event caused by one bar carries: the same for the same candle from
    any source, so a replayed or resumed run matches its journal."""
    return f"{symbol}|{timeframe}|{close_ns}"


class Features(Event, frozen=True, kw_only=True, tag=True):
    """Indicator values computed from the bars up to and including one bar."""

    symbol: str
    timeframe: str
    feature_set: str
    values: dict[str, float]


class Signal(Event, frozen=True, kw_only=True, tag=True):
    """A strategy's view of the next bar (1 = up, with the probability of up) and the
    action its trade rule draws from it; the risk manager sizes and checks the order."""

    strategy_id: str
    symbol: str
    prediction: int
    probability_up: float
    confidence: Confidence
    action: Action = "HOLD"
    model_version: str = ""
    config_version: int = 0  # the strategy config in force when this signal was made


class OrderRequest(Event, frozen=True, kw_only=True, tag=True):
    """An order the risk manager approved.

    ``symbol`` is ``BASE/QUOTE``; BUY spends the quote token for the base token, SELL
    the reverse. ``amount_in`` is in base units of the token spent. The executor
    quotes at submission and sets the minimum output to
    ``quote * (10_000 - max_slippage_bps) // 10_000``, unless ``min_amount_out`` > 0 gives
    that floor explicitly (then slippage is not applied again).
    """

    order_id: str
    strategy_id: str
    symbol: str
    side: Side
    amount_in: int
    max_slippage_bps: int = 50
    min_amount_out: int = 0


class RiskRejected(Event, frozen=True, kw_only=True, tag=True):
    """A signal or order the risk manager refused, with a stable reason code."""

    strategy_id: str
    symbol: str
    reason: str
    detail: str = ""
    order_id: str = ""


class RiskStateChanged(Event, frozen=True, kw_only=True, tag=True):
    """The risk manager moved between ACTIVE, REDUCING and HALTED."""

    previous: str
    state: str
    reason: str = ""


class OrderSubmitted(Event, frozen=True, kw_only=True, tag=True):
    """The executor handed the order to the venue (for a DEX: a signed, sent transaction)."""

    order_id: str
    venue_order_id: str
    nonce: int | None = None


class OrderFilled(Event, frozen=True, kw_only=True, tag=True):
    """The order executed; amounts in base units, ``price`` in quote per base.

    ``detail`` notes anything a reader of the fill should know (a dry run's fill whose
    gas could not be estimated says why)."""

    order_id: str
    symbol: str
    side: Side
    amount_in: int
    amount_out: int
    price: float
    fee_paid: int = 0
    gas_used: int = 0
    gas_cost_wei: int = 0
    venue_order_id: str = ""
    detail: str = ""


class OrderFailed(Event, frozen=True, kw_only=True, tag=True):
    """The order did not execute; ``reason`` is short and stable, ``detail`` free text."""

    order_id: str
    reason: str
    detail: str = ""


class PortfolioUpdate(Event, frozen=True, kw_only=True, tag=True):
    """Balances (base units by token) and equity after a fill or a mark to market."""

    balances: dict[str, int]
    equity_quote: float
    peak_equity_quote: float
    drawdown: float


class StartingBalances(Event, frozen=True, kw_only=True, tag=True):
    """A trading account's balances read from the chain at ``block`` when a live executor
    first started on this journal: the portfolio starts from them. ``balances`` are base
    units by token symbol; ``eth_wei`` pays gas and is no position. A resumed run
    re-publishes the journalled one (so the portfolio re-derives the same book)."""

    account: str
    block: int
    balances: dict[str, int]
    eth_wei: int = 0


class BalancesObserved(Event, frozen=True, kw_only=True, tag=True):
    """The same account's balances read again (``reason``: ``start`` of a resumed run,
    ``periodic``, ``fill``), at a moment no swap of it was in flight: the portfolio
    compares them with its book."""

    account: str
    block: int
    balances: dict[str, int]
    eth_wei: int = 0
    reason: str = ""


class StrategyConfigChanged(Event, frozen=True, kw_only=True, tag=True):
    """A validated strategy config was swapped in."""

    strategy_id: str
    version: str
    config: dict[str, object]


class ShadowSignal(Event, frozen=True, kw_only=True, tag=True):
    """A model in shadow (a challenger, or the previous champion during a canary) made
    this prediction beside the champion; journalled and measured, never traded: it is
    not a ``Signal``, so the risk manager never sees it."""

    strategy_id: str
    symbol: str
    model_version: str
    role: Literal["challenger", "previous"]
    prediction: int
    probability_up: float
    action: Action = "HOLD"


class RetrainStarted(Event, frozen=True, kw_only=True, tag=True):
    """A retraining began; its training set holds the bars from ``data_start`` to
    ``data_end`` (close times), none after the clock's time when it began."""

    strategy_id: str
    model_name: str
    trigger: str  # schedule | model_age | accuracy | drift | operator
    detail: str = ""
    data_start: int = 0
    data_end: int = 0
    rows: int = 0


class RetrainFailed(Event, frozen=True, kw_only=True, tag=True):
    strategy_id: str
    model_name: str
    trigger: str
    reason: str


class ChallengerRegistered(Event, frozen=True, kw_only=True, tag=True):
    """A retrained model registered as the challenger (not in service): it predicts in
    shadow until the promotion gate decides."""

    strategy_id: str
    model_name: str
    version: str
    tuning_accuracy: float
    data_end: int


class PromotionDecided(Event, frozen=True, kw_only=True, tag=True):
    """The promotion gate's decision on a challenger, with its test statistics."""

    strategy_id: str
    model_name: str
    challenger: str
    champion: str
    promoted: bool
    reason: str
    statistics: dict[str, object] = {}


class ModelPromoted(Event, frozen=True, kw_only=True, tag=True):
    """A model version became the one in service (the champion)."""

    model_name: str
    version: str
    metrics: dict[str, float] = {}
    strategy_id: str = ""
    previous: str = ""
    reason: str = ""


class ModelRolledBack(Event, frozen=True, kw_only=True, tag=True):
    """The champion was replaced by the one before it (a failed canary, an operator)."""

    strategy_id: str
    model_name: str
    from_version: str
    to_version: str
    reason: str
    statistics: dict[str, object] = {}


class SizingChanged(Event, frozen=True, kw_only=True, tag=True):
    """The share of the normal order size the risk manager gives a strategy's BUYs
    (a canary's ramp; 1.0 is full size)."""

    strategy_id: str
    fraction: float
    reason: str = ""


class ComponentStateChanged(Event, frozen=True, kw_only=True, tag=True):
    """A component moved through its lifecycle; ``reason`` explains DEGRADED/FAULTED."""

    component: str
    previous: str
    state: str
    reason: str = ""


class SubscriberFailed(Event, frozen=True, kw_only=True, tag=True):
    """A critical bus subscriber (the journal) raised: the event it failed on, and every
    later one it fails on, is withheld from the others until it recovers."""

    subscriber: str
    event_type: str
    event_seq: int
    error: str


class SubscriberRecovered(Event, frozen=True, kw_only=True, tag=True):
    """A critical bus subscriber that was failing handled an event again."""

    subscriber: str


# The bus's notices about its critical subscribers: never withheld.
SUBSCRIBER_NOTICES = (SubscriberFailed, SubscriberRecovered)


AnyEvent = (
    Heartbeat
    | Bar
    | Features
    | Signal
    | OrderRequest
    | RiskRejected
    | RiskStateChanged
    | OrderSubmitted
    | OrderFilled
    | OrderFailed
    | PortfolioUpdate
    | StartingBalances
    | BalancesObserved
    | StrategyConfigChanged
    | ShadowSignal
    | RetrainStarted
    | RetrainFailed
    | ChallengerRegistered
    | PromotionDecided
    | ModelPromoted
    | ModelRolledBack
    | SizingChanged
    | ComponentStateChanged
    | SubscriberFailed
    | SubscriberRecovered
)

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(AnyEvent)


def to_json(event: Event) -> bytes:
    """Serialise any event, with its type tag, to JSON bytes."""
    return _json_encoder.encode(event)


def from_json(data: bytes | str) -> Event:
    """Read back an event written by :func:`to_json` as its own class."""
    return _json_decoder.decode(data)
