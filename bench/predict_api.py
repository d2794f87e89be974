"""`POST /predict` throughput and latency: `trade-engine serve` vs the seed's Flask app.

Trains (or reuses, with ``--models-dir`` and ``--name``) a `stationary` model on the
bundled BTC/USDT hourly candles before 2021, as the paper demo does, then in the same
run drives, one after the other, with an aiohttp client at concurrency 1, 8 and 64 for
``--seconds`` each, posting real feature rows (row form):

* ours: ``trade-engine serve`` (aiohttp, micro-batching, persisted model) in a
  subprocess;
* baseline: the seed's way — a Flask app that does ``TabularPredictor.load(...)`` once,
  and per request ``df = pd.DataFrame([data]); predictor.predict(df);
  predictor.predict_proba(df)``, on Flask's threaded development server, in a
  subprocess.

Goal (issue 7): >= 5x the baseline's req/s at concurrency 64 with p99 <= 50 ms.
The load generator runs on the same machine and shares its cores with the server.

    .venv/bin/python bench/predict_api.py [--seconds 10] [--models-dir DIR --name NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
from machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
DATA_NAME = "BTC-USDT_1h.csv.gz"
CONCURRENCY = (1, 8, 64)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_model(models_dir: Path, name: str, time_limit: float) -> None:
    from adapters.replay.market_data import SAMPLES_DIR
    from ml.pipeline import train_from_file
    from ml.registry import ModelRegistry
    from ml.training import TrainSettings

    settings = TrainSettings(feature_set="stationary", time_limit=time_limit)
    train_from_file(
        SAMPLES_DIR / DATA_NAME, settings, ModelRegistry(models_dir), name, until="2021-01-01"
    )


def feature_rows(count: int) -> list[dict[str, float]]:
    from adapters.replay.market_data import SAMPLES_DIR
    from engine.candles import read_candles
    from ml.labels import make_dataset

    frame, _, _ = read_candles(SAMPLES_DIR / DATA_NAME)
    features, _ = make_dataset(frame.iloc[-(count + 500) :], "stationary")
    return features.iloc[-count:].to_dict("records")


# -- the baseline, as the seed builds it -----------------------------------------------


def serve_baseline(predictor_path: str, port: int) -> None:
    """The seed's Flask app (run in its own process by ``--serve-baseline``)."""
    import logging

    import pandas as pd
    from autogluon.tabular import TabularPredictor
    from flask import Flask, jsonify, request

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    predictor = TabularPredictor.load(predictor_path, verbosity=0)
    app = Flask("seed-baseline")

    @app.post("/predict")
    def predict():  # the seed's handler
        data = request.get_json()
        df = pd.DataFrame([data])
        prediction = predictor.predict(df)
        proba = predictor.predict_proba(df)
        p_up = float(proba.iloc[0][1])
        certainty = max(p_up, 1 - p_up)
        confidence = "high" if certainty > 0.7 else "medium" if certainty > 0.5 else "low"
        return jsonify(
            {"prediction": int(prediction.iloc[0]), "probability": p_up, "confidence": confidence}
        )

    @app.get("/ready")
    def ready():
        return "ok"

    app.run(host="127.0.0.1", port=port, threaded=True)


# -- load generation -------------------------------------------------------------------


async def drive(
    url: str, bodies: list[bytes], concurrency: int, seconds: float, warmup: float
) -> tuple[float, float, float, int, int]:
    """req/s, p50 ms, p99 ms, answered, errors over ``seconds`` after ``warmup``."""
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        measure_from = started + warmup
        stop_at = measure_from + seconds

        async def worker(offset: int) -> None:
            nonlocal errors
            for body in itertools.islice(itertools.cycle(bodies), offset, None):
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(i * 7) for i in range(concurrency)))
    ms = np.array(latencies) * 1000
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99)) if len(ms) else (np.nan, np.nan)
    return len(latencies) / seconds, p50, p99, len(latencies), errors


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(5)


def batch_stats(port: int) -> tuple[float, float]:
    """Model calls and rows so far, from the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("trade_engine_predict_batch_rows_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values.get("trade_engine_predict_batch_rows_count", 0.0), values.get(
        "trade_engine_predict_batch_rows_sum", 0.0
    )


def run_server(
    label: str,
    argv: list[str],
    port: int,
    bodies: list[bytes],
    seconds: float,
    warmup: float,
    batched: bool,
) -> dict[int, tuple[float, float, float, int, int, str]]:
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    results: dict[int, tuple[float, float, float, int, int, str]] = {}
    try:
        wait_ready(port, proc)
        url = f"http://127.0.0.1:{port}/predict"
        for concurrency in CONCURRENCY:
            before = batch_stats(port) if batched else (0.0, 0.0)
            figures = asyncio.run(drive(url, bodies, concurrency, seconds, warmup))
            note = ""
            if batched:
                calls, rows = (a - b for a, b in zip(batch_stats(port), before, strict=True))
                note = f"{rows / calls:.1f} rows/call" if calls else ""
            results[concurrency] = (*figures, note)
            print(
                f"  {label} c={concurrency}: {figures[0]:.0f} req/s p50 {figures[1]:.2f} ms "
                f"p99 {figures[2]:.2f} ms ({figures[3]} ok, {figures[4]} errors) {note}",
                file=sys.stderr,
            )
    finally:
        stop(proc)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--time-limit", type=float, default=60.0, help="training budget")
    parser.add_argument("--models-dir", type=Path, help="reuse a registry instead of training")
    parser.add_argument("--name", default="bench-predict")
    parser.add_argument("--inference", choices=["inline", "thread"], default="inline")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--serve-baseline", nargs=2, metavar=("PREDICTOR", "PORT"))
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline[0], int(args.serve_baseline[1]))
        return

    from ml.registry import ModelRegistry

    with tempfile.TemporaryDirectory() as tmp:
        models_dir = args.models_dir or Path(tmp) / "models"
        registry = ModelRegistry(models_dir)
        if registry.current(args.name) is None:
            # In another process: training leaves thread pools behind (bench/inference.py).
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                pool.submit(train_model, models_dir, args.name, args.time_limit).result()
        entry = registry.current(args.name)
        assert entry is not None
        bodies = [json.dumps(row).encode() for row in feature_rows(500)]

        ours_port = free_port()
        ours = run_server(
            "ours",
            [
                *(sys.executable, "-m", "engine", "serve"),
                *("--models-dir", str(models_dir), "--model", args.name),
                *("--port", str(ours_port), "--log-level", "warning"),
                *("--inference", args.inference),
                *("--max-batch-size", str(args.max_batch_size)),
                *("--max-wait-ms", str(args.max_wait_ms)),
            ],
            ours_port,
            bodies,
            args.seconds,
            args.warmup,
            batched=True,
        )
        baseline: dict[int, tuple[float, float, float, int, int, str]] = {}
        if not args.skip_baseline:
            base_port = free_port()
            baseline = run_server(
                "baseline",
                [
                    *(sys.executable, __file__, "--serve-baseline"),
                    *(str(entry.predictor_path), str(base_port)),
                ],
                base_port,
                bodies,
                args.seconds,
                args.warmup,
                batched=False,
            )

    meta = entry.metadata
    print(f"# bench/predict_api.py: {describe_machine()}")
    print(
        f"# model: {meta['feature_set']} features ({len(entry.feature_columns)}), "
        f"{meta['metrics']['best_model']}, trained with "
        f"time_limit={meta['settings']['time_limit']}s; {args.seconds:g} s per level after "
        f"{args.warmup:g} s warm-up; ours: inference={args.inference}, "
        f"max_batch_size={args.max_batch_size}, max_wait_ms={args.max_wait_ms:g}; "
        "load generator (aiohttp, one process) on the same machine"
    )
    print()
    print("| concurrency | server | req/s | p50 ms | p99 ms | errors | note |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in CONCURRENCY:
        for label, results in (("trade-engine serve", ours), ("Flask baseline", baseline)):
            if concurrency in results:
                rps, p50, p99, _, errs, note = results[concurrency]
                print(
                    f"| {concurrency} | {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errs} "
                    f"| {note} |"
                )
    if baseline:
        print()
        for concurrency in CONCURRENCY:
            ratio = ours[concurrency][0] / baseline[concurrency][0]
            print(f"req/s ratio at concurrency {concurrency}: {ratio:.1f}x")
        rps64, p99_64 = ours[64][0] / baseline[64][0], ours[64][2]
        verdict = "met" if rps64 >= 5 and p99_64 <= 50 else "NOT met"
        print(f"goal (>= 5x at 64 with p99 <= 50 ms): {verdict} ({rps64:.1f}x, {p99_64:.1f} ms)")


if __name__ == "__main__":
    main()
