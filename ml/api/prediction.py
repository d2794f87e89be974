"""`POST /predict` and `GET /openapi.json`: the model in service, over HTTP.

The component loads a registered model (off the loop), keeps the latest live
`Features` of each (symbol, timeframe) of its feature set, and offers its routes to
the daemon's HTTP server through ``http_routes()``. It is RUNNING only once the model
is loaded, so `/ready` means "model loaded"; before that `/predict` answers 503.
Rows of concurrent requests are answered by one model call (:mod:`ml.api.batching`).
Every bad request is a 400 naming the field (:mod:`ml.api.schema`); a client that
goes away before its answer is counted as 499, not as an error; a 500 would be a bug,
and is logged as one.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from aiohttp import hdrs, web
from prometheus_client import Counter, Histogram
from pydantic import Field, model_validator

from engine.component import Component, ComponentContext, ComponentState
from engine.config import StrictModel
from engine.config_paths import NEW_DIRECTORY
from engine.events import Features
from engine.http_server import CLIENT_GONE, client_went_away
from ml.api.batching import BatcherClosedError, MicroBatcher
from ml.api.schema import (
    FeatureRow,
    MarketRef,
    PredictRequestError,
    PredictSchema,
    check_content_type,
    list_limit,
    openapi_document,
)
from ml.confidence import confidence_level
from ml.serving import ModelServers, ServingModel

REQUEST_CODES = ("200", "400", "413", str(CLIENT_GONE), "500", "503")
DURATION_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class PredictionApiConfig(StrictModel):
    strategy: str | None = Field(
        None,
        description="Serve the model of this strategy (of a strategy host listed in "
        "`depends_on`): the very champion it trades, swapped at the same moment when the "
        "retrain supervisor promotes or rolls back. Unset: load `model` itself.",
    )
    model: str | None = Field(
        None, description="Model name in the registry (when not following a strategy)."
    )
    models_dir: Annotated[str, NEW_DIRECTORY] = Field("models", description="Model registry root.")
    version: str | None = Field(None, description="Model version; unset: the champion.")
    feature_set: str = Field(
        "seed", description="Feature set the model was trained on and the engine computes."
    )
    high_confidence: float = Field(0.7, gt=0.5, lt=1, description="`high` above this.")
    medium_confidence: float = Field(0.5, ge=0.5, lt=1, description="`medium` above this.")
    max_batch_size: int = Field(
        64, gt=0, le=4096, description="Most rows answered by one model call."
    )
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Longest a row waits for others to join its batch (it waits less when "
        "no other request is arriving).",
    )
    max_body_bytes: int = Field(
        65536, gt=0, le=16 * 1024 * 1024, description="Larger bodies are refused with a 400."
    )
    max_list_length: int = Field(
        1000,
        gt=0,
        description="Most items in one list body; more is a 400. Fewer when `max_body_bytes` "
        "cannot hold this many feature rows (64 bytes a value); /openapi.json states the "
        "number in force.",
    )
    market_references: bool = Field(
        True,
        description="Answer market references (`{symbol, timeframe}`) from the engine's "
        "live features; false where nothing computes them (`trade-engine serve`): the "
        "OpenAPI document then offers feature rows only.",
    )
    inference: Literal["inline", "thread"] = Field(
        "inline",
        description="Run the model call on the event loop (`inline`) or in one worker "
        "thread; see docs/benchmarks.md.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PredictionApiConfig:
        if self.medium_confidence >= self.high_confidence:
            raise ValueError("medium_confidence must be below high_confidence")
        if (self.strategy is None) == (self.model is None):
            raise ValueError("name exactly one of `strategy` (follow it) or `model` (load it)")
        return self


def _iso_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, message: str, field: str | None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


class PredictionApi(Component):
    """Serves the model's next-bar predictions over HTTP, micro-batched."""

    Config = PredictionApiConfig

    def __init__(
        self,
        name: str,
        settings: PredictionApiConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self._own_model: ServingModel | None = None
        self._servers: ModelServers | None = None  # the host of the followed strategy
        self._labels: list[str] = []  # model labels by the id a batch reports
        self._schema: PredictSchema | None = None
        self._batcher: MicroBatcher | None = None
        self._openapi: tuple[str, bytes] = ("", b"")  # (model label, document)
        self._list_limit = 0
        self._live: dict[tuple[str, str], Features] = {}
        self._requests = Counter(
            "trade_engine_predict_requests",
            "POST /predict requests answered, by HTTP status code.",
            ["code"],
            registry=None,
        )
        self._by_code = {code: self._requests.labels(code) for code in REQUEST_CODES}
        self._duration = Histogram(
            "trade_engine_predict_request_duration_seconds",
            "Time to answer a POST /predict request, server side.",
            buckets=DURATION_BUCKETS_S,
            registry=None,
        )
        self._batch_rows = Histogram(
            "trade_engine_predict_batch_rows",
            "Rows per model call of the prediction API (micro-batching).",
            buckets=BATCH_ROW_BUCKETS,
            registry=None,
        )

    # -- lifecycle -----------------------------------------------------------------

    @property
    def model(self) -> ServingModel | None:
        """The model answering now: the followed strategy's champion, or our own."""
        if self._servers is None:
            return self._own_model
        server = self._servers.model_server(self.settings.strategy or "")
        return None if server is None else server.model

    def _follow(self, strategy: str) -> ModelServers:
        for name in self.depends_on:
            found = self.context.components.find(Component, name)
            if isinstance(found, ModelServers) and found.model_server(strategy) is not None:
                return found
        raise RuntimeError(
            f"prediction API {self.name!r}: no strategy {strategy!r} in the components it "
            f"depends on ({', '.join(self.depends_on) or 'none'}): list the strategy host "
            "in depends_on"
        )

    async def on_start(self) -> None:
        s = self.settings
        if s.strategy is not None:
            self._servers = self._follow(s.strategy)
            model = self.model
            assert model is not None
        else:
            assert s.model is not None
            model = await asyncio.to_thread(
                ServingModel.load, s.models_dir, s.model, s.version, s.feature_set
            )
            self._own_model = model
        items = list_limit(s.max_list_length, s.max_body_bytes, len(model.columns))
        self._schema = PredictSchema(model.columns, items, s.market_references)
        self._list_limit = items
        self._batcher = MicroBatcher(
            self._predict_matrix,
            max_batch_size=s.max_batch_size,
            max_wait_s=s.max_wait_ms / 1000,
            in_thread=s.inference == "thread",
            on_batch=self._batch_rows.observe,
        )
        self._batcher.start()
        for collector in (self._requests, self._duration, self._batch_rows):
            self.register_collector(collector)
        self.subscribe(Features, self.on_features, name=f"{self.name}.on_features")
        self.log.info(
            "predict.model_loaded",
            model=model.label,
            best=model.model_name,
            features=len(model.columns),
            inference=s.inference,
        )

    async def on_stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
            self._batcher = None
        self._own_model = None
        self._servers = None

    def on_features(self, features: Features) -> None:
        if features.feature_set == self.settings.feature_set:
            self._live[(features.symbol, features.timeframe)] = features

    def http_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/predict", self._post_predict),
            web.get("/openapi.json", self._get_openapi),
        ]

    # -- model ---------------------------------------------------------------------

    def _predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """P(up) of each row and, beside it, the id of the model that answered (the
        champion may be swapped between two batches: each answer names its own)."""
        model = self.model
        if model is None:
            raise BatcherClosedError("the model is not loaded")
        if model.label not in self._labels:
            self._labels.append(model.label)
        probabilities = model.predict_frame(pd.DataFrame(matrix, columns=model.columns, copy=False))
        return np.column_stack(
            (probabilities, np.full(len(probabilities), self._labels.index(model.label)))
        )

    def _answer(self, probability_up: float, model_label: str) -> dict[str, Any]:
        p = float(probability_up)
        s = self.settings
        return {
            "prediction": int(p > 0.5),
            "probability": p,
            "confidence": confidence_level(p, s.high_confidence, s.medium_confidence),
            "model_version": model_label,
        }

    def _live_row(self, ref: MarketRef, columns: tuple[str, ...]) -> tuple[list[float], Features]:
        """The latest live feature values of a market, or a 400 naming the field."""
        at = f"{ref.field_prefix}." if ref.field_prefix else ""
        timeframes = sorted(tf for (symbol, tf) in self._live if symbol == ref.symbol)
        if not timeframes:
            known = sorted({symbol for symbol, _ in self._live})
            raise PredictRequestError(
                f"no live {self.settings.feature_set!r} features for this symbol "
                f"(markets with features: {', '.join(known) or 'none yet'})",
                at + "symbol",
            )
        timeframe = ref.timeframe
        if timeframe is None:
            if len(timeframes) > 1:
                raise PredictRequestError(
                    f"the symbol has features for several timeframes "
                    f"({', '.join(timeframes)}): name one",
                    at + "timeframe",
                )
            timeframe = timeframes[0]
        features = self._live.get((ref.symbol, timeframe))
        if features is None:
            raise PredictRequestError(
                f"no live features for this timeframe (known: {', '.join(timeframes)})",
                at + "timeframe",
            )
        try:
            row = [float(features.values[c]) for c in columns]
        except KeyError as exc:
            raise PredictRequestError(
                f"the live features lack the model's column {exc.args[0]!r}", at + "symbol"
            ) from None
        if not all(math.isfinite(v) for v in row):
            raise PredictRequestError(
                "the live features are not all finite yet (warming up)", at + "symbol"
            )
        return row, features

    # -- HTTP ----------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        check_content_type(request.headers.get(hdrs.CONTENT_TYPE))
        length = request.content_length
        if length is not None and length > limit:
            raise PredictRequestError(
                f"body of {length} bytes is over the limit of {limit} bytes", "body"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise PredictRequestError(f"body is over the limit of {limit} bytes", "body")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _post_predict(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            response = await self._predict(request)
        except PredictRequestError as exc:
            response = web.json_response(exc.to_json(), status=400)
        except BatcherClosedError as exc:
            response = _error(503, f"no model loaded: {exc}", None)
        except Exception as exc:
            if client_went_away(request, exc):  # mid-body, say: there is no one to answer
                response = web.Response(status=CLIENT_GONE)
            else:  # a bug: log it, answer 500, keep serving
                self.log.exception("predict.internal_error", error=f"{type(exc).__name__}: {exc}")
                response = _error(500, "internal error (logged)", None)
        code = str(response.status)
        counter = self._by_code.get(code)
        (counter if counter is not None else self._requests.labels(code)).inc()
        self._duration.observe(time.perf_counter() - started)
        return response

    async def _predict(self, request: web.Request) -> web.Response:
        model, schema, batcher = self.model, self._schema, self._batcher
        if self.state is not ComponentState.RUNNING or None in (model, schema, batcher):
            return _error(503, "no model loaded yet", None)
        assert model is not None
        assert schema is not None
        assert batcher is not None
        parsed = schema.parse(await self._read_body(request))
        rows: list[list[float] | tuple[float, ...]] = []
        live: dict[int, Features] = {}
        for index, item in enumerate(parsed.items):
            if isinstance(item, FeatureRow):
                rows.append(item.values)
            else:
                row, features = self._live_row(item, schema.columns)
                rows.append(row)
                live[index] = features
        answered = await batcher.predict(np.array(rows, dtype=np.float64))
        answers = [self._answer(p, self._labels[int(i)]) for p, i in answered]
        for index, features in live.items():
            answers[index].update(
                symbol=features.symbol,
                timeframe=features.timeframe,
                features_time=_iso_time(features.ts_event),
            )
        return web.json_response(answers if parsed.is_list else answers[0])

    async def _get_openapi(self, request: web.Request) -> web.Response:
        model = self.model
        if model is None or self._schema is None:
            return _error(503, "no model loaded yet", None)
        if self._openapi[0] != model.label:  # built again after a promotion or rollback
            s = self.settings
            document = openapi_document(
                model.columns, model.label, self._list_limit, s.max_body_bytes, s.market_references
            )
            self._openapi = (model.label, json.dumps(document).encode())
        return web.Response(body=self._openapi[1], content_type="application/json")
