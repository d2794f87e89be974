"""A real Prometheus server scrapes the daemon; the docs and the dashboard match what it serves.

The daemon runs config/paper.yaml's loop as a subprocess (a week of real hourly candles,
a small model trained here); Prometheus (the Debian package `prometheus`, which
`make test` installs) runs on loopback with a 1 s scrape interval, and everything is
read back through its HTTP API.

Grafana is not installable here (Debian has no `grafana` package and nothing may be
downloaded outside the package registries), so the dashboard JSON is checked
structurally, and every PromQL expression in it is parsed by the real Prometheus.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_docs import METRIC_NAME, documented_series
from tests.paper_support import paper_config, shared_small_model
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "trade-engine.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "trade-engine"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# What Grafana puts in place of its built-in interval variables.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


# -- the daemon ---------------------------------------------------------------------------


@dataclass
class Daemon:
    process: EngineProcess
    port: int
    components: set[str]
    bars: int
    model_label: str

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    """The paper loop over one week, replayed as fast as it runs, then idling (serving)."""
    tmp = tmp_path_factory.mktemp("prometheus-daemon")
    models = shared_small_model(tmp_path_factory)
    config = paper_config(models, tmp / "journal.sqlite", end="2021-01-07T23:00:00Z")
    config.update(
        clock="live", api={"host": "127.0.0.1", "port": free_port()}, log={"format": "json"}
    )
    path = tmp / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    process = EngineProcess("run", "--config", str(path))
    try:
        port = process.wait_for_log("api.listening", timeout=60)["port"]
        label = process.wait_for_log("strategy.model_loaded", timeout=60)["model"]
        bars = process.wait_for_log("replay.finished", timeout=60)["bars"]
        yield Daemon(
            process, port, {c["name"] for c in config["components"]} | {"api"}, bars, label
        )
    finally:
        process.send(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        finally:
            process.kill()


# -- Prometheus ---------------------------------------------------------------------------


class PrometheusServer:
    """`prometheus` on a free loopback port, scraping one target every second."""

    def __init__(self, binary: str, target_port: int, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:  # a bad query is a 400 with a JSON body
            return json.loads(err.read())

    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self.get("/api/v1/query", **params)

    def vector(self, promql: str, at: float | None = None) -> dict[frozenset, float]:
        """An instant query's samples, keyed by their labels (without job and instance)."""
        answer = self.query(promql, at)
        assert answer["status"] == "success", (promql, answer)
        return {
            frozenset(
                (k, v) for k, v in r["metric"].items() if k not in ("job", "instance")
            ): float(r["value"][1])
            for r in answer["data"]["result"]
        }

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def prometheus(daemon, tmp_path_factory) -> Iterator[PrometheusServer]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the `prometheus` binary is not installed: `make test` installs it "
            "(apt-get install prometheus), or install the Debian package yourself"
        )
    server = PrometheusServer(binary, daemon.port, tmp_path_factory.mktemp("prometheus"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def scalar(prometheus: PrometheusServer, promql: str) -> float:
    """The value of an instant query that must return exactly one sample."""
    (value,) = prometheus.vector(promql).values()
    return value


def wait_for_scrape(prometheus: PrometheusServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = prometheus.vector(f'up{{job="{JOB}"}}')
        if up:
            assert list(up.values()) == [1.0], up
            return
        time.sleep(0.25)
    raise AssertionError(f"no scrape of the daemon within {timeout} s")


# -- what the docs and the dashboard say ---------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return found


def expressions(node: Any) -> list[str]:
    """Every PromQL ``expr`` anywhere in the dashboard (targets and annotations)."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def with_variables(expr: str, board: dict[str, Any]) -> str:
    """``expr`` with the dashboard's variables replaced by their current values, as Grafana does."""
    values = dict(GRAFANA_BUILTINS)
    for var in board["templating"]["list"]:
        current = var["current"]["value"]
        values[var["name"]] = "|".join(current) if isinstance(current, list) else current
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"unknown variable in {expr!r}"
    return expr


def family_name(sample_name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


# -- tests --------------------------------------------------------------------------------


def test_prometheus_scrapes_the_daemon_and_reads_back_its_series(daemon, prometheus):
    wait_for_scrape(prometheus)
    targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets] == [(JOB, "up", "")]

    # The replay ended before Prometheus started, so the bar count is final.
    bars = prometheus.vector('trade_engine_bus_published_events_total{event_type="Bar"}')
    assert list(bars.values()) == [daemon.bars]
    assert daemon.bars > 100

    running = prometheus.vector('trade_engine_component_state{state="RUNNING"} == 1')
    assert {dict(labels)["component"] for labels in running} == daemon.components

    # Within one scrape, the per-type counts add up to the bus's sequence number.
    at = time.time()
    published = prometheus.vector("sum(trade_engine_bus_published_events_total)", at)
    sequence = prometheus.vector("trade_engine_bus_sequence", at)
    assert list(published.values()) == list(sequence.values())

    # Values Prometheus stored are the ones the daemon serves (nothing moves after the replay).
    served = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(daemon.metrics_text())
        for s in family.samples
    }
    for series in (
        "trade_engine_portfolio_equity_quote",
        "trade_engine_portfolio_drawdown_ratio",
        "trade_engine_model_predictions_scored_total",
        "trade_engine_model_rolling_accuracy_ratio",
    ):
        stored = prometheus.vector(series)
        assert stored, f"{series} is not in Prometheus"
        for labels, value in stored.items():
            key = (series, tuple(sorted(labels - {("__name__", series)})))
            assert value == pytest.approx(served[key], rel=1e-12), series

    assert scalar(prometheus, "trade_engine_model_predictions_scored_total") > 50
    assert 0.0 <= scalar(prometheus, "trade_engine_model_rolling_accuracy_ratio") <= 1.0
    info = prometheus.vector("trade_engine_model_info == 1")
    assert [dict(labels)["model_version"] for labels in info] == [daemon.model_label]

    states = prometheus.vector("trade_engine_risk_state == 1")
    assert len(states) == 1
    assert dict(next(iter(states)))["state"] in {"ACTIVE", "REDUCING", "HALTED"}
    # Every BUY/SELL signal was either approved or rejected.
    assert scalar(prometheus, "sum(trade_engine_risk_rejections_total)") + scalar(
        prometheus, "sum(trade_engine_risk_orders_total)"
    ) == scalar(prometheus, 'sum(trade_engine_risk_signals_total{action!="HOLD"})')


def test_every_dashboard_expression_parses_in_prometheus(prometheus):
    board = dashboard()
    exprs = expressions(board)
    assert len(exprs) >= 30
    errors = {}
    for expr in exprs:
        answer = prometheus.query(with_variables(expr, board))
        if answer["status"] != "success":
            errors[expr] = answer.get("error")
    assert not errors, errors

    # The tick-to-order variable's defaults are handlers of the shipped config.
    wait_for_scrape(prometheus)
    (tick_path,) = [v for v in board["templating"]["list"] if v["name"] == "tick_path"]
    handlers = prometheus.vector(
        with_variables('trade_engine_bus_handled_events_total{subscriber=~"$tick_path"}', board)
    )
    assert sorted(dict(labels)["subscriber"] for labels in handlers) == sorted(
        tick_path["current"]["value"]
    )

    # The check can fail: Prometheus refuses an expression Grafana did not expand.
    assert prometheus.query("rate(trade_engine_bus_sequence[$__rate_interval])")["status"] == (
        "error"
    )


def test_the_alert_rules_run_on_the_daemons_series(prometheus):
    """Every expression of deploy/prometheus/alerts.yml evaluates on the real series; the
    market-data age the stale alert compares is the time since the replay's last bar."""
    wait_for_scrape(prometheus)
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in (r for group in groups for r in group["rules"]):
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer)
    age = scalar(prometheus, "time() - trade_engine_market_last_bar_timestamp_seconds")
    assert 0 <= age < 300  # the replay ended moments ago
    assert not prometheus.vector(f'up{{job="{JOB}"}} == 0')  # TradeEngineDown's condition


def test_the_dashboard_queries_only_series_that_exist_or_are_documented(daemon):
    served = {
        sample.name
        for family in text_string_to_metric_families(daemon.metrics_text())
        for sample in family.samples
    }
    documented = set(documented_series())
    referenced = {name for expr in expressions(dashboard()) for name in METRIC_NAME.findall(expr)}
    unknown = {
        name for name in referenced if name not in served and family_name(name) not in documented
    }
    assert not unknown, f"the dashboard queries series nobody serves or documents: {unknown}"
    # Most of what it shows is live today, not only promised by the docs.
    assert len(referenced & served) >= 20


def test_every_series_the_daemon_serves_is_documented_with_its_type_and_labels(daemon):
    documented = documented_series()
    families = [
        f
        for f in text_string_to_metric_families(daemon.metrics_text())
        if f.name.startswith("trade_engine_")
    ]
    assert len(families) >= 25
    problems = []
    for family in families:
        # The parser names counters without `_total`; the exposition (and the docs) add it.
        name = f"{family.name}_total" if family.type == "counter" else family.name
        if name not in documented:
            problems.append(f"{name} ({family.type}) is not in docs/metrics.md")
            continue
        kind, labels = documented[name]
        served_labels = {k for s in family.samples for k in s.labels if k != "le"}
        if kind != family.type:
            problems.append(f"{name}: documented as {kind}, served as {family.type}")
        if family.samples and served_labels != labels:
            problems.append(f"{name}: documented labels {labels}, served {served_labels}")
    assert not problems, "\n".join(problems)


def test_dashboard_and_provisioning_are_well_formed():
    board = dashboard()
    every = panels(board)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    boxes = []
    for panel in every:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys(), panel["title"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0, panel["title"]
        boxes.append((panel["title"], grid))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    for i, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[i + 1 :]:
            overlap = (
                a["x"] < b["x"] + b["w"]
                and b["x"] < a["x"] + a["w"]
                and a["y"] < b["y"] + b["h"]
                and b["y"] < a["y"] + a["h"]
            )
            assert not overlap, f"panels {title_a!r} and {title_b!r} overlap"

    titles = " ".join(p["title"].lower() for p in every)
    topics = ("equity", "drawdown", "confidence", "rejections", "tick-to-order", "/predict",
              "bus", "accuracy", "model", "risk state", "component", "config reload",
              "model age", "retrains", "rollbacks", "canary", "supervisor phase")  # fmt: skip
    for topic in topics:
        assert topic in titles, f"no panel about {topic}"

    # The provisioned datasource is the one the dashboard's variable defaults to.
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    variable = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert (source["type"], source["uid"]) == (variable["query"], variable["current"]["value"])
    # docker-compose's datasource (deploy/grafana/compose/) is the same one, on the compose network.
    compose = yaml.safe_load(
        (PROVISIONING.parent / "compose" / "datasources" / "prometheus.yaml").read_text()
    )
    (in_compose,) = compose["datasources"]
    assert (in_compose["type"], in_compose["uid"]) == (source["type"], source["uid"])
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "trade-engine.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_the_risk_state_panel_shows_halted_in_red(tmp_path):
    """The stat panel's query, run by promtool over each risk state, gives the value its
    value mappings name after that state; HALTED's is red."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("`promtool` (Debian package prometheus) is missing: `make test` installs it")
    board = dashboard()
    by_title = {p["title"]: p for p in panels(board)}
    stat, timeline = by_title["Risk state"], by_title["Risk state over time"]
    assert timeline["targets"][0]["expr"] == stat["targets"][0]["expr"]
    assert (
        timeline["fieldConfig"]["defaults"]["mappings"]
        == stat["fieldConfig"]["defaults"]["mappings"]
    )
    (mapping,) = stat["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    value_of = {m["text"]: float(v) for v, m in mapping["options"].items()}
    assert mapping["options"][str(int(value_of["HALTED"]))]["color"] == "red"
    assert mapping["options"][str(int(value_of["ACTIVE"]))]["color"] == "green"

    # One engine instance in each state, as the daemon serves it (1 for the current one).
    states = ("ACTIVE", "REDUCING", "HALTED")
    series = [
        {
            "series": f'trade_engine_risk_state{{job="{JOB}", instance="{current}", state="{s}"}}',
            "values": "1" if s == current else "0",
        }
        for current in states
        for s in states
    ]
    expected = [{"labels": f'{{instance="{s}"}}', "value": value_of[s]} for s in states]
    query = with_variables(stat["targets"][0]["expr"], board)
    check = {"expr": query, "eval_time": "0m", "exp_samples": expected}
    case = {"interval": "1m", "input_series": series, "promql_expr_test": [check]}
    tests = tmp_path / "panel.test.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [], "tests": [case]}))
    run = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_example_scrape_config_is_valid_for_prometheus():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("`promtool` (Debian package prometheus) is missing: `make test` installs it")
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    check = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    targets = yaml.safe_load(config.read_text())["scrape_configs"][0]["static_configs"][0]
    assert targets["targets"] == ["127.0.0.1:8080"]
