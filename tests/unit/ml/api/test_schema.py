"""Validation of `POST /predict` bodies, its OpenAPI document, and the confidence levels."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.api.batching import MicroBatcher
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

COLUMNS = ("rsi_14", "log_return_1", "bb_width")
ROW = {"rsi_14": 55.5, "log_return_1": -0.002, "bb_width": 3}
SCHEMA = PredictSchema(COLUMNS, max_list_length=3)


def error_of(body: bytes | str) -> PredictRequestError:
    with pytest.raises(PredictRequestError) as info:
        SCHEMA.parse(body.encode() if isinstance(body, str) else body)
    return info.value


def test_a_row_becomes_its_values_in_column_order_whatever_the_key_order():
    body = json.dumps(dict(reversed(list(ROW.items()))))
    parsed = SCHEMA.parse(body.encode())
    assert parsed.items == [FeatureRow((55.5, -0.002, 3.0))]
    assert not parsed.is_list


def test_market_references_with_and_without_timeframe_and_lists_keep_order():
    body = json.dumps([{"symbol": "BTC/USDT", "timeframe": "1h"}, ROW, {"symbol": "ETH/USDT"}])
    parsed = SCHEMA.parse(body.encode())
    assert parsed.is_list
    assert parsed.items == [
        MarketRef("BTC/USDT", "1h", "[0]"),
        FeatureRow((55.5, -0.002, 3.0)),
        MarketRef("ETH/USDT", None, "[2]"),
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**ROW, "volume": 1.0}, "volume", "unknown feature"),
        ({"rsi_14": 1.0, "bb_width": 1.0}, "log_return_1", "missing feature"),
        ({**ROW, "rsi_14": True}, "rsi_14", "got boolean"),
        ({**ROW, "rsi_14": "55"}, "rsi_14", "got string"),
        ({**ROW, "rsi_14": None}, "rsi_14", "got null"),
        ({**ROW, "rsi_14": [1.0]}, "rsi_14", "got array"),
        ({**ROW, "rsi_14": 10**400}, "rsi_14", "finite"),
        ({"symbol": 5}, "symbol", "non-empty string"),
        ({"symbol": ""}, "symbol", "non-empty string"),
        ({"symbol": "BTC/USDT", "timeframe": 1}, "timeframe", "non-empty string"),
        ({"symbol": "BTC/USDT", "rsi_14": 1.0}, "rsi_14", "unknown field"),
        ([ROW, {**ROW, "bb_width": False}], "[1].bb_width", "got boolean"),
        ([ROW, 7], "[1]", "expected a JSON object"),
        ([ROW, {"symbol": None}], "[1].symbol", "non-empty string"),
        ([ROW] * 4, "body", "over the limit of 3"),
        ([], "body", "empty list"),
        (5, "body", "got number"),
        ("BTC/USDT", "body", "got string"),
        (None, "body", "got null"),
    ],
)
def test_each_bad_item_names_its_field(body, field, words):
    error = error_of(json.dumps(body))
    assert error.field == field
    assert words in error.message


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", str(10**309), str(-(10**400))]
)
def test_non_finite_numbers_including_python_json_literals_are_refused(literal):
    body = json.dumps(ROW).replace("55.5", literal)
    error = error_of(body)
    assert (error.field, "finite" in error.message) == ("rsi_14", True)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b'{"rsi_14": 1,}', b"\xff\xfe\x00garbage", b"[" * 50_000, b"nul"],
)
def test_bodies_that_are_not_json_are_a_body_error_not_a_crash(body):
    error = error_of(body)
    assert error.field == "body"
    assert error.to_json() == {"error": error.message, "field": "body"}


def test_the_largest_float_is_the_line_for_integers_too_compared_exactly():
    largest = int(sys.float_info.max)
    for value in (largest, -largest, 10**308):
        (item,) = SCHEMA.parse(json.dumps({**ROW, "rsi_14": value}).encode()).items
        assert item == FeatureRow((float(value), -0.002, 3.0))
    for value in (largest + 1, -largest - 1):
        assert error_of(json.dumps({**ROW, "rsi_14": value})).field == "rsi_14"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"rsi_14": 1, "log_return_1": 2, "bb_width": 3, "rsi_14": 4}', "rsi_14"),
        ('[{"symbol": "BTC/USDT", "symbol": "ETH/USDT"}]', "[0].symbol"),
        (f'[{json.dumps(ROW)}, {{"bb_width": 1, "bb_width": 1}}]', "[1].bb_width"),
    ],
)
def test_a_key_given_twice_in_an_object_is_refused_naming_it(body, field):
    error = error_of(body)
    assert (error.field, "more than once" in error.message) == (field, True)


def test_without_live_features_a_market_reference_is_an_unknown_feature():
    rows_only = PredictSchema(COLUMNS, market_references=False)
    with pytest.raises(PredictRequestError) as info:
        rows_only.parse(b'{"symbol": "BTC/USDT", "timeframe": "1h"}')
    assert info.value.field == "symbol"
    assert "no live features" in info.value.message


def test_content_type_must_be_json_when_given():
    check_content_type(None)
    check_content_type("application/json; charset=utf-8")
    check_content_type("application/problem+json")
    with pytest.raises(PredictRequestError) as info:
        check_content_type("application/x-www-form-urlencoded")
    assert info.value.field == "Content-Type"


def test_messages_never_echo_the_values_sent():
    secret_like = "0x" + "ab" * 32
    error = error_of(json.dumps({**ROW, "rsi_14": secret_like}))
    assert secret_like not in error.message


def _non_empty_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@given(
    st.dictionaries(
        st.sampled_from([*COLUMNS, "symbol", "timeframe"]) | st.text(max_size=8),
        st.floats() | st.text(max_size=6) | st.booleans(),
        max_size=6,
    )
)
def test_any_object_is_accepted_exactly_when_valid_else_refused_with_a_field(obj):
    if "symbol" in obj:
        valid = (
            set(obj) <= {"symbol", "timeframe"}
            and _non_empty_text(obj["symbol"])
            and ("timeframe" not in obj or _non_empty_text(obj["timeframe"]))
        )
    else:
        valid = set(obj) == set(COLUMNS) and all(
            isinstance(v, float) and math.isfinite(v) for v in obj.values()
        )
    body = json.dumps(obj).encode()
    if not valid:
        with pytest.raises(PredictRequestError) as info:
            SCHEMA.parse(body)
        assert info.value.field
        return
    (item,) = SCHEMA.parse(body).items
    if "symbol" in obj:
        assert item == MarketRef(obj["symbol"], obj.get("timeframe"), "")
    else:
        assert item == FeatureRow(tuple(obj[c] for c in COLUMNS))


def test_openapi_document_lists_the_model_columns_and_both_body_forms():
    doc = openapi_document(COLUMNS, "btc/v1", max_list_length=1000, max_body_bytes=65536)
    json.dumps(doc)  # serialisable
    post = doc["paths"]["/predict"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["oneOf"][1]["type"] == "array"
    assert schema["oneOf"][1]["maxItems"] == 1000
    row = doc["components"]["schemas"]["FeatureRow"]
    assert list(row["properties"]) == list(COLUMNS) == row["required"]
    assert row["additionalProperties"] is False
    assert {"200", "400", "503"} <= set(post["responses"])
    assert doc["components"]["schemas"]["MarketRef"]["required"] == ["symbol"]
    largest = int(sys.float_info.max)  # exact, as the server compares
    number = {"type": "number", "minimum": -largest, "maximum": largest}
    assert row["properties"]["rsi_14"] == number


def test_openapi_document_offers_only_rows_where_there_are_no_live_features():
    doc = openapi_document(COLUMNS, "btc/v1", 10, 65536, market_references=False)
    assert "MarketRef" not in doc["components"]["schemas"]
    forms = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "MarketRef" not in json.dumps(forms)


def test_the_list_limit_is_what_the_byte_limit_can_hold():
    assert list_limit(1000, 65536, columns=19) == 65536 // (64 * 19) == 53
    assert list_limit(10, 65536, columns=19) == 10
    assert list_limit(1000, 100, columns=19) == 1


@pytest.mark.parametrize(
    ("p_up", "expected"),
    [(0.71, "high"), (0.29, "high"), (0.7, "medium"), (0.3, "medium"), (0.55, "medium"),
     (0.45, "medium"), (0.5, "low")],
)  # fmt: skip
def test_confidence_levels_follow_the_seed(p_up, expected):
    assert confidence_level(p_up, high=0.7, medium=0.5) == expected


async def test_micro_batcher_answers_concurrent_callers_in_one_call_each_with_its_rows():
    import asyncio

    import numpy as np

    calls: list[int] = []

    def model(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0] / 100  # a deterministic function of each row

    batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.05)
    batcher.start()
    try:
        rows = [np.array([[float(i), 0.0]]) for i in range(20)]
        answers = await asyncio.gather(*(batcher.predict(r) for r in rows))
        assert [float(a[0]) for a in answers] == [i / 100 for i in range(20)]
        assert sum(calls) == 20
        assert max(calls) <= 8
        assert len(calls) < 20
        big = np.arange(40, dtype=float).reshape(20, 2)
        assert list(await batcher.predict(big)) == list(big[:, 0] / 100)
        assert max(calls) <= 8  # a long list is split into batch-sized calls
    finally:
        await batcher.stop()
