"""What `POST /predict` accepts, checked field by field, and its OpenAPI description.

A body is one item or a JSON list of items. An item is either a feature row — an
object whose keys are exactly the model's feature columns, each a finite JSON number
(booleans and strings are not numbers) — or, where the engine computes live features,
a market reference ``{"symbol": "BTC/USDT", "timeframe": "1h"}`` that the server
answers from the latest of them. A key given twice in one object is refused (JSON
leaves it undefined which one counts). Every problem raises :class:`PredictRequestError`
naming the field (``rsi_14``, ``[3].symbol``, ``body``), which the API turns into a 400.
Values are never echoed back: a body is untrusted input. :func:`openapi_document`
describes exactly this, so a body valid by the document is answered 200.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARKET_KEYS = frozenset({"symbol", "timeframe"})
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json"})
# The largest finite float, as the exact integer it is: the OpenAPI document states it so,
# since a validator reading "1.7976931348623157e308" as a decimal would draw the line
# elsewhere than this server, which compares JSON integers with it exactly.
LARGEST_VALUE = int(sys.float_info.max)
VALUE_BYTES = 64  # room one feature takes in a body: its quoted name, a number, punctuation


class PredictRequestError(ValueError):
    """A request `POST /predict` refuses with a 400; ``field`` says where the problem is."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """Feature values in the model's column order."""

    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class MarketRef:
    """Answer from the live features of this market (timeframe optional)."""

    symbol: str
    timeframe: str | None
    field_prefix: str


Item = FeatureRow | MarketRef


@dataclass(frozen=True, slots=True)
class PredictRequest:
    items: list[Item]
    is_list: bool


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(_short(n)) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


FIELD_NAME_CHARS = 64  # an unknown key is untrusted input: shown truncated


def _short(name: str) -> str:
    if not name:
        return '""'
    return name if len(name) <= FIELD_NAME_CHARS else name[:FIELD_NAME_CHARS] + "..."


def _at(prefix: str, name: str) -> str:
    """The field path of ``name`` inside the item at ``prefix`` (``[3].rsi_14``)."""
    return f"{prefix}.{_short(name)}" if prefix else _short(name)


class _RepeatedKeyObject(dict[str, Any]):
    """A decoded JSON object in which ``repeated`` was given more than once."""

    repeated: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook: a dict, marked when a key came twice (refused later,
    where the field path of the object is known)."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _RepeatedKeyObject(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            break
        seen.add(key)
    return marked


def list_limit(max_list_length: int, max_body_bytes: int, columns: int) -> int:
    """Most items a list body may hold: ``max_list_length``, or fewer when
    ``max_body_bytes`` cannot hold that many feature rows (:data:`VALUE_BYTES` a value),
    so that the OpenAPI document never offers a list the byte limit would refuse."""
    return max(1, min(max_list_length, max_body_bytes // (VALUE_BYTES * max(columns, 1))))


def check_content_type(content_type: str | None) -> None:
    """A missing Content-Type is taken as JSON; anything else must be a JSON type."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in JSON_CONTENT_TYPES or media.endswith("+json"):
        return
    raise PredictRequestError(
        f"send the body as JSON (Content-Type: application/json), not {media or 'empty'!r}",
        "Content-Type",
    )


class PredictSchema:
    """Validates `POST /predict` bodies for one model's feature columns."""

    def __init__(
        self, columns: Sequence[str], max_list_length: int = 1000, market_references: bool = True
    ) -> None:
        self.columns = tuple(columns)
        self._column_set = frozenset(self.columns)
        self.max_list_length = max_list_length
        self.market_references = market_references

    def parse(self, body: bytes) -> PredictRequest:
        """Decode and validate a whole body."""
        if not body.strip():
            raise PredictRequestError("empty body: send a JSON object or a list of them", "body")
        try:
            # Python's json accepts NaN/Infinity literals; they decode to floats and are
            # refused below with the field they sit in.
            data = json.loads(body, object_pairs_hook=_object)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise PredictRequestError(f"body is not valid JSON: {detail}", "body") from None
        if isinstance(data, dict):
            return PredictRequest([self.item(data, "")], is_list=False)
        if isinstance(data, list):
            if not data:
                raise PredictRequestError("empty list: send at least one object", "body")
            if len(data) > self.max_list_length:
                raise PredictRequestError(
                    f"list of {len(data)} items is over the limit of {self.max_list_length}",
                    "body",
                )
            return PredictRequest(
                [self.item(obj, f"[{i}]") for i, obj in enumerate(data)], is_list=True
            )
        raise PredictRequestError(
            f"body must be a JSON object or a list of objects, got {json_type(data)}", "body"
        )

    def item(self, obj: object, prefix: str) -> Item:
        """One feature row or market reference; ``prefix`` locates it in a list."""
        if not isinstance(obj, dict):
            raise PredictRequestError(
                f"expected a JSON object, got {json_type(obj)}", prefix or "body"
            )
        if isinstance(obj, _RepeatedKeyObject):
            raise PredictRequestError(
                "the key is given more than once in this object: send each key once",
                _at(prefix, obj.repeated),
            )
        if self.market_references and "symbol" in obj:
            return self._market(obj, prefix)
        return self._row(obj, prefix)

    def _row(self, obj: dict[str, Any], prefix: str) -> FeatureRow:
        if len(obj) != len(self.columns) or obj.keys() != self._column_set:
            unknown = [key for key in obj if key not in self._column_set]
            if unknown:
                live = (
                    ", or send {'symbol': ..., 'timeframe': ...} for live features"
                    if self.market_references
                    else " (this server has no live features to answer a market with)"
                )
                raise PredictRequestError(
                    f"unknown feature {_listed(unknown)}: the model takes "
                    f"{len(self.columns)} features (see GET /openapi.json){live}",
                    _at(prefix, unknown[0]),
                )
            missing = [c for c in self.columns if c not in obj]
            raise PredictRequestError(
                f"missing feature {_listed(missing)}",
                _at(prefix, missing[0]),
            )
        values: list[float] = []
        for column in self.columns:
            value = obj[column]
            kind = type(value)
            if kind is float:
                within = math.isfinite(value)
            elif kind is int:  # exactly, not as a float: 10**400 is no float at all
                within = abs(value) <= LARGEST_VALUE
            else:
                raise PredictRequestError(
                    f"must be a number, got {json_type(value)}",
                    _at(prefix, column),
                )
            if not within:
                raise PredictRequestError(
                    "must be a finite number (NaN, Infinity and numbers beyond "
                    "1.8e308 are refused)",
                    _at(prefix, column),
                )
            values.append(float(value))
        return FeatureRow(tuple(values))

    def _market(self, obj: dict[str, Any], prefix: str) -> MarketRef:
        extra = [key for key in obj if key not in MARKET_KEYS]
        if extra:
            raise PredictRequestError(
                f"unknown field {_listed(extra)}: a market reference has only "
                "'symbol' and 'timeframe'",
                _at(prefix, extra[0]),
            )
        symbol = obj["symbol"]
        if not isinstance(symbol, str) or not symbol.strip():
            raise PredictRequestError(
                f"must be a non-empty string such as 'BTC/USDT', got {json_type(symbol)}",
                _at(prefix, "symbol"),
            )
        timeframe = obj.get("timeframe")
        if timeframe is not None and (not isinstance(timeframe, str) or not timeframe.strip()):
            raise PredictRequestError(
                f"must be a non-empty string such as '1h', got {json_type(timeframe)}",
                _at(prefix, "timeframe"),
            )
        return MarketRef(symbol, timeframe, prefix)


# -- OpenAPI ---------------------------------------------------------------------------


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(
    columns: Sequence[str],
    model_version: str,
    max_list_length: int,
    max_body_bytes: int,
    market_references: bool = True,
) -> dict[str, Any]:
    """OpenAPI 3.1 description of `POST /predict` for a model with these columns; the
    market form only where the server answers it (``market_references``)."""
    forms = ["FeatureRow", *(["MarketRef"] if market_references else [])]
    item = {"oneOf": [{"$ref": f"#/components/schemas/{form}"} for form in forms]}
    answer = {"$ref": "#/components/schemas/Prediction"}
    either = "the feature values, or a market whose latest live features the engine should use"
    send = either if market_references else "the feature values"
    schemas = {
        "FeatureRow": {
            "type": "object",
            "description": "Every feature column of the model, each a finite number.",
            "properties": {c: FINITE_NUMBER for c in columns},
            "required": list(columns),
            "additionalProperties": False,
        },
        **({"MarketRef": MARKET_REF} if market_references else {}),
        "Prediction": PREDICTION,
        "Error": ERROR,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trade-engine prediction API",
            "version": model_version,
            "description": (
                f"Next-bar direction of the model in service. Send {send}; or a list of "
                f"up to {max_list_length} items. Bodies over {max_body_bytes} bytes, "
                "bad JSON, repeated keys, unknown or missing features, non-numbers and "
                "NaN/Infinity are refused with a 400 naming the field."
            ),
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict the next bar's direction",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        item,
                                        {
                                            "type": "array",
                                            "items": item,
                                            "minItems": 1,
                                            "maxItems": max_list_length,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One answer per item, in order (a list for a list).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [answer, {"type": "array", "items": answer}]
                                    }
                                }
                            },
                        },
                        "400": _error_response("Invalid request; `field` names the problem."),
                        "503": _error_response("No model loaded yet."),
                    },
                }
            }
        },
        "components": {"schemas": schemas},
    }


FINITE_NUMBER = {"type": "number", "minimum": -LARGEST_VALUE, "maximum": LARGEST_VALUE}
MARKET_REF = {
    "type": "object",
    "description": "Use the engine's latest live features of this market.",
    "properties": {
        "symbol": {"type": "string", "minLength": 1, "examples": ["BTC/USDT"]},
        "timeframe": {
            "type": "string",
            "minLength": 1,
            "description": "Optional when the engine has one for the symbol.",
            "examples": ["1h"],
        },
    },
    "required": ["symbol"],
    "additionalProperties": False,
}
PREDICTION = {
    "type": "object",
    "properties": {
        "prediction": {"type": "integer", "enum": [0, 1]},
        "probability": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Probability that the next bar closes higher.",
        },
        "confidence": {"type": "string", "enum": ["high", "medium", "low"]},
        "model_version": {"type": "string"},
        "symbol": {"type": "string", "description": "Market references only."},
        "timeframe": {"type": "string", "description": "Market references only."},
        "features_time": {
            "type": "string",
            "format": "date-time",
            "description": "Close time of the bar the live features are of.",
        },
    },
    "required": ["prediction", "probability", "confidence", "model_version"],
}
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}},
    "required": ["error", "field"],
}
