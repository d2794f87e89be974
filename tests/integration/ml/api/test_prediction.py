"""`POST /predict` on a real aiohttp server: contract, validation, fuzzing, batching, CLI.

The engine (prediction component + HTTP API, a real model trained here in a few
seconds) runs on its own event loop in a thread, listening on 127.0.0.1; tests talk
to it over TCP like any client. Live features are published on its real bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing as mp
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adapters.replay.market_data import SAMPLES_DIR
from engine.app import Engine
from engine.candles import read_candles
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import Features
from ml.api.prediction import PredictionApi
from ml.confidence import confidence_level
from ml.labels import make_dataset
from tests.processes import EngineProcess, free_port, metric_value, wait_until

pytestmark = pytest.mark.integration

MODEL = "btc-usdt-1h"
DATA = SAMPLES_DIR / "BTC-USDT_1h.csv.gz"
JSON = {"Content-Type": "application/json"}


def train_tiny_model(root: Path) -> None:
    """A few seconds of LightGBM on the hourly candles of 2017-2018."""
    from ml.pipeline import train_from_file
    from ml.registry import ModelRegistry
    from ml.training import TrainSettings

    settings = TrainSettings(
        feature_set="stationary", time_limit=15, hyperparameters={"GBM": {"num_boost_round": 30}}
    )
    train_from_file(DATA, settings, ModelRegistry(root), MODEL, until="2019-01-01")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    # In another process: training leaves thread pools behind that slow inference here.
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        pool.submit(train_tiny_model, root).result()
    return root


@pytest.fixture(scope="module")
def rows() -> list[dict[str, float]]:
    frame, _, _ = read_candles(DATA)
    features, _ = make_dataset(frame.iloc[-1500:], "stationary")
    return features.iloc[-100:].to_dict("records")


class ServerThread:
    """The engine with a prediction component, on its own loop in a thread."""

    def __init__(self, models: Path) -> None:
        self.config = parse_engine_config(
            {
                "api": {"host": "127.0.0.1", "port": 0},
                "components": [
                    {
                        "name": "predict",
                        "type": "prediction_api",
                        "config": {
                            "model": MODEL,
                            "models_dir": str(models),
                            "feature_set": "stationary",
                            "max_batch_size": 16,
                        },
                    }
                ],
            }
        )
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.thread.start()
        assert self.ready.wait(120), "the engine did not start"
        if self.error is not None:
            raise self.error

    async def _main(self) -> None:
        try:
            self.engine = Engine(self.config, Secrets())
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.engine.start()
            assert self.engine.api is not None
            self.port = self.engine.api.port
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise
        self.ready.set()
        await self._stop.wait()
        await self.engine.stop()

    @property
    def component(self) -> PredictionApi:
        return self.engine.graph.get("predict")  # type: ignore[return-value]

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def publish(self, event: Features) -> None:
        self.run(self.engine.bus.publish(event))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


@pytest.fixture(scope="module")
def server(models):
    running = ServerThread(models)
    yield running
    running.stop()


class Client:
    """One persistent HTTP/1.1 connection, reopened if the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, Any]:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
        data = response.read()
        ctype = response.getheader("Content-Type", "")
        return response.status, json.loads(data) if "json" in ctype else data.decode()

    def predict(self, body: Any, headers: dict | None = None) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", "/predict", raw, JSON if headers is None else headers)


@pytest.fixture
def client(server):
    c = Client(server.port)
    yield c
    c.conn.close()


def expected_answer(server: ServerThread, row: dict[str, float]) -> dict[str, Any]:
    model = server.component.model
    assert model is not None
    p_up = model.predict_up(row)
    return {
        "prediction": int(p_up > 0.5),
        "probability": pytest.approx(p_up, abs=1e-12),
        "confidence": confidence_level(p_up, 0.7, 0.5),
        "model_version": model.label,
    }


def features_event(row: dict[str, float], symbol: str, timeframe: str, ts: int) -> Features:
    return Features(
        ts_event=ts, ts_init=ts, symbol=symbol, timeframe=timeframe,
        feature_set="stationary", values=row,
    )  # fmt: skip


# -- the contract ------------------------------------------------------------------------


def test_a_feature_row_gets_the_seed_answer_and_the_model_version(server, client, rows):
    for row in rows[:5]:
        status, answer = client.predict(row)
        assert status == 200
        assert answer == expected_answer(server, row)
        assert answer["model_version"].startswith(f"{MODEL}/")


def test_a_market_reference_uses_the_latest_live_features_of_that_market(server, client, rows):
    status, answer = client.predict({"symbol": "SOL/USDT", "timeframe": "1h"})
    assert (status, answer["field"]) == (400, "symbol")

    first, latest = rows[10], rows[11]
    ts = 1_700_000_000 * 10**9
    server.publish(features_event(first, "SOL/USDT", "1h", ts))
    server.publish(features_event(latest, "SOL/USDT", "1h", ts + 3600 * 10**9))
    ignored = {**first, "rsi_14": 1.0}  # another feature set: not what the model takes
    server.publish(
        Features(ts_event=ts, ts_init=ts, symbol="SOL/USDT", timeframe="1h",
                 feature_set="seed", values=ignored)
    )  # fmt: skip

    for body in ({"symbol": "SOL/USDT", "timeframe": "1h"}, {"symbol": "SOL/USDT"}):
        status, answer = client.predict(body)
        assert status == 200, answer
        assert answer == {
            **expected_answer(server, latest),
            "symbol": "SOL/USDT",
            "timeframe": "1h",
            "features_time": "2023-11-14T23:13:20Z",
        }

    status, answer = client.predict({"symbol": "SOL/USDT", "timeframe": "4h"})
    assert (status, answer["field"]) == (400, "timeframe")
    server.publish(features_event(first, "SOL/USDT", "4h", ts))
    status, answer = client.predict({"symbol": "SOL/USDT"})  # now ambiguous
    assert (status, answer["field"]) == (400, "timeframe")
    assert "1h, 4h" in answer["error"]
    status, answer = client.predict({"symbol": "SOL/USDT", "timeframe": "4h"})
    assert answer["probability"] == expected_answer(server, first)["probability"]


def test_a_list_gets_a_list_of_answers_in_order(server, client, rows):
    server.publish(features_event(rows[20], "ETH/USDT", "1h", 1_600_000_000 * 10**9))
    body = [rows[0], {"symbol": "ETH/USDT", "timeframe": "1h"}, rows[1], rows[2]]
    status, answers = client.predict(body)
    assert status == 200
    assert [a["probability"] for a in answers] == [
        expected_answer(server, r)["probability"] for r in (rows[0], rows[20], rows[1], rows[2])
    ]
    assert answers[1]["symbol"] == "ETH/USDT"
    assert "symbol" not in answers[0]

    status, error = client.predict([rows[0]] * 1001)
    assert (status, error["field"]) == (400, "body")
    status, error = client.predict([rows[0], {"symbol": "NOPE/USDT"}])
    assert (status, error["field"]) == (400, "[1].symbol")


def bad_bodies(row: dict[str, float]) -> list[tuple[str, bytes, dict[str, str], str]]:
    """(case, body, headers, field it must name)."""
    first = next(iter(row))
    good = json.dumps(row)
    without_first = {k: v for k, v in row.items() if k != first}
    return [
        ("unknown feature", json.dumps({**row, "volume": 1}).encode(), JSON, "volume"),
        ("missing feature", json.dumps(without_first).encode(), JSON, first),
        ("bool", json.dumps({**row, first: True}).encode(), JSON, first),
        ("string", json.dumps({**row, first: "1.5"}).encode(), JSON, first),
        ("null", json.dumps({**row, first: None}).encode(), JSON, first),
        ("NaN literal", json.dumps({**row, first: math.nan}).encode(), JSON, first),
        ("Infinity literal", json.dumps({**row, first: math.inf}).encode(), JSON, first),
        ("-Infinity literal", json.dumps({**row, first: -math.inf}).encode(), JSON, first),
        ("1e999", json.dumps({**row, first: 123.25}).replace("123.25", "1e999").encode(), JSON,
         first),
        ("10**400", json.dumps({**row, first: 10**400}).encode(), JSON, first),
        ("repeated key", (good[:-1] + f', "{first}": 1.0}}').encode(), JSON, first),
        ("repeated key in a list", f'[{good}, {good[:-1]}, "{first}": 1.0}}]'.encode(), JSON,
         f"[1].{first}"),
        ("unknown symbol", b'{"symbol": "DOGE/USDT", "timeframe": "1h"}', JSON, "symbol"),
        ("symbol not a string", b'{"symbol": 42}', JSON, "symbol"),
        ("body over 64 KB", b"[" + b" " * 70_000 + b"]", JSON, "body"),
        ("bad JSON", good[:-3].encode(), JSON, "body"),
        ("not UTF-8", b"\xff\xfe\xfa{", JSON, "body"),
        ("deeply nested", b"[" * 60_000, JSON, "body"),
        ("a number", b"3.5", JSON, "body"),
        ("a string", b'"BTC/USDT"', JSON, "body"),
        ("empty body", b"", JSON, "body"),
        ("empty list", b"[]", JSON, "body"),
        ("list of numbers", b"[1, 2]", JSON, "[0]"),
        ("form content", good.encode(), {"Content-Type": "application/x-www-form-urlencoded"},
         "Content-Type"),
        ("text content", good.encode(), {"Content-Type": "text/plain"}, "Content-Type"),
    ]  # fmt: skip


def test_every_bad_input_is_a_400_naming_the_field(server, client, rows):
    before = metric_value(server.port, 'trade_engine_predict_requests_total{code="400"}')
    cases = bad_bodies(rows[0])
    for case, body, headers, field in cases:
        status, answer = client.predict(body, headers)
        assert status == 400, (case, answer)
        assert answer["field"] == field, (case, answer)
        assert answer["error"], case
    after = metric_value(server.port, 'trade_engine_predict_requests_total{code="400"}')
    assert after - before == len(cases)
    status, _ = client.predict(rows[0])  # the connection and the server still serve
    assert status == 200


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(server, rows):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (b" " * 8192 for _ in range(20))
    conn.request("POST", "/predict", body=chunks, headers=JSON, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["field"] == "body"
    conn.close()


def test_a_client_that_goes_away_mid_body_is_counted_499_and_not_as_an_error(server):
    gone = 'trade_engine_predict_requests_total{code="499"}'
    before = metric_value(server.port, gone)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n[{"
        )
        time.sleep(0.1)  # the handler is reading the body
    wait_until(lambda: metric_value(server.port, gone) == before + 1, 5, "a request counted as 499")
    assert metric_value(server.port, 'trade_engine_http_requests_total{code="499"}') >= 1
    for family in ("predict", "http"):
        assert metric_value(server.port, f'trade_engine_{family}_requests_total{{code="500"}}') == 0


def test_openapi_describes_predict_with_the_model_columns(server, client, rows):
    status, doc = client.request("GET", "/openapi.json")
    assert status == 200
    assert doc["info"]["version"] == server.component.model.label
    post = doc["paths"]["/predict"]["post"]
    assert {"200", "400"} <= set(post["responses"])
    feature_row = doc["components"]["schemas"]["FeatureRow"]
    assert feature_row["required"] == list(rows[0]) == server.component.model.columns
    forms = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert forms[1]["type"] == "array"


# -- micro-batching --------------------------------------------------------------------


async def test_concurrent_requests_share_model_calls_and_get_their_own_answers(server, rows):
    one_by_one = [expected_answer(server, row)["probability"] for row in rows[:48]]
    calls_before = metric_value(server.port, "trade_engine_predict_batch_rows_count")
    rows_before = metric_value(server.port, "trade_engine_predict_batch_rows_sum")
    url = f"http://127.0.0.1:{server.port}/predict"
    async with aiohttp.ClientSession() as session:

        async def post(row: dict[str, float]) -> dict[str, Any]:
            async with session.post(url, json=row) as response:
                assert response.status == 200
                return await response.json()

        answers = await asyncio.gather(*(post(row) for row in rows[:48]))
        async with session.get(f"http://127.0.0.1:{server.port}/health") as response:
            assert response.status == 200
    calls = metric_value(server.port, "trade_engine_predict_batch_rows_count") - calls_before
    batched_rows = metric_value(server.port, "trade_engine_predict_batch_rows_sum") - rows_before
    assert [a["probability"] for a in answers] == one_by_one
    assert batched_rows == 48
    assert calls < 48, f"{calls} model calls for 48 concurrent requests"


# -- fuzzing -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
NOT_A_NUMBER = (
    st.booleans() | st.none() | st.text(max_size=8) | st.just(math.nan) | st.just(math.inf)
    | st.lists(st.floats(), max_size=2) | st.integers(min_value=10**310, max_value=10**320)
)  # fmt: skip
FINITE = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)


def body_strategy(rows: list[dict[str, float]]) -> st.SearchStrategy[bytes]:
    """Valid rows (real ones with one value replaced by any finite number), rows with one
    thing wrong, market references, random JSON, cut JSON, random bytes, huge bodies."""
    columns = list(rows[0])

    @st.composite
    def row(draw: st.DrawFn) -> dict[str, Any]:
        values = dict(draw(st.sampled_from(rows)))
        values[draw(st.sampled_from(columns))] = draw(FINITE)
        return values

    @st.composite
    def near_row(draw: st.DrawFn) -> dict[str, Any]:
        values = draw(row())
        column = draw(st.sampled_from(columns))
        change = draw(st.sampled_from(["drop", "add", "wrong"]))
        if change == "drop":
            del values[column]
        elif change == "add":
            values[draw(st.text(max_size=12))] = draw(FINITE)
        else:
            values[column] = draw(NOT_A_NUMBER)
        return values

    market = st.fixed_dictionaries(
        {"symbol": st.text(max_size=10) | st.sampled_from(["BTC/USDT", "ETH/USDT"])},
        optional={"timeframe": st.sampled_from(["1h", "4h", ""]) | JSON_VALUES},
    )
    item = row() | near_row() | market | JSON_VALUES
    as_json = (item | st.lists(item, max_size=4)).map(lambda v: json.dumps(v).encode())
    huge = st.integers(65_537, 120_000).map(lambda n: b"[" + b"0," * (n // 2) + b"0]")
    cut = as_json.flatmap(lambda b: st.integers(0, len(b)).map(lambda i: b[:i]))
    return st.one_of(as_json, as_json, cut, st.binary(max_size=200), huge)


@pytest.mark.parametrize("examples", [2_000, pytest.param(10_000, marks=pytest.mark.soak)])
def test_generated_bodies_never_get_a_5xx(server, rows, examples):
    """2,000 generated bodies in `make test`; the 10,000 of the hostile-input run in
    `make soak`."""
    client = Client(server.port)
    seen: dict[int, int] = {}
    content_types = st.sampled_from(
        ["application/json"] * 8 + ["text/plain", "application/json; charset=utf-8"]
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(body=body_strategy(rows), content_type=content_types)
    def post(body: bytes, content_type: str) -> None:
        status, answer = client.predict(body, {"Content-Type": content_type})
        seen[status] = seen.get(status, 0) + 1
        assert status in (200, 400), (status, answer)
        if status == 400:
            assert set(answer) == {"error", "field"}
            assert answer["field"]
        else:
            answers = answer if isinstance(answer, list) else [answer]
            assert all(a["prediction"] in (0, 1) and 0 <= a["probability"] <= 1 for a in answers)

    post()
    assert sum(seen.values()) >= examples
    assert seen.get(200, 0) > examples // 20, seen  # valid rows were part of the mix
    assert metric_value(server.port, 'trade_engine_predict_requests_total{code="500"}') == 0
    client.conn.close()


# -- the command -----------------------------------------------------------------------


@contextlib.contextmanager
def served(models: Path) -> Iterator[tuple[EngineProcess, int]]:
    """`trade-engine serve` on a free loopback port, killed at the end."""
    port = free_port()
    process = EngineProcess(
        "serve", "--models-dir", str(models), "--model", MODEL, "--port", str(port)
    )
    try:
        process.wait_for_log("api.listening", timeout=90)
        yield process, port
    finally:
        process.kill()


def test_serve_command_answers_predict_and_stops_cleanly_on_sigterm(models, rows):
    with served(models) as (process, port):
        client = Client(port)
        status, answer = client.predict(rows[0])
        assert status == 200
        assert answer["model_version"].startswith(f"{MODEL}/")
        assert answer["confidence"] in ("high", "medium", "low")
        status, answer = client.predict({"symbol": "BTC/USDT", "timeframe": "1h"})
        assert (status, answer["field"]) == (400, "symbol")  # no market data in `serve`
        # ... so its OpenAPI document does not offer the market form.
        status, doc = client.request("GET", "/openapi.json")
        assert status == 200
        assert set(doc["components"]["schemas"]) == {"FeatureRow", "Prediction", "Error"}
        assert "symbol" not in json.dumps(doc["paths"])
        status, ready = client.request("GET", "/ready")
        assert status == 200
        assert ready["ready"] is True
        client.conn.close()
        process.send(signal.SIGTERM)
        assert process.wait(20) == 0
        assert process.wait_for_log("engine.stopped")["clean"] is True


def test_schemathesis_finds_no_5xx_and_no_schema_violation_in_serve(models, tmp_path):
    """Every check of schemathesis (server errors, status codes, content types, response
    schemas, schema-valid bodies accepted, schema-violating ones refused) on
    /openapi.json of `trade-engine serve`, with bounded examples (about 10 s)."""
    with served(models) as (_, port):
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks", "all", "--max-examples", "150", "--seed", "12",
                "--generation-database", "none", "--no-color",
            ],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts is not None, summary
    assert int(counts[1]) == int(counts[2]) > 100, summary


def test_metrics_are_registered_while_running_and_unregistered_on_stop(models):
    from prometheus_client import generate_latest

    running = ServerThread(models)
    registry = running.engine.metrics.registry
    assert b"trade_engine_predict_requests_total" in generate_latest(registry)
    running.stop()
    assert b"trade_engine_predict" not in generate_latest(registry)
