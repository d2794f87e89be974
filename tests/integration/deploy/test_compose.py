"""deploy/docker-compose.yml, as a real compose implementation reads it.

Debian's `docker-compose` (v1; `make test` installs it) resolves the file with
deploy/.env.example (`docker-compose config`: no Docker engine needed, none runs here);
every file and folder it bind-mounts must exist, and the Prometheus and Grafana
configs it mounts must point at the compose services, not 127.0.0.1. The containers
themselves are not started: there is no Docker engine on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.paths import ROOT

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "trade-engine.json"


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "`docker-compose` (Debian package docker-compose) is missing: `make test` installs it"
        )
    return binary


def compose_config(binary: str, env_file: Path) -> subprocess.CompletedProcess:
    # Only PATH from the environment: a variable set in the caller's shell would hide
    # a missing one in the env file.
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def resolved(docker_compose) -> dict[str, Any]:
    result = compose_config(docker_compose, ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            mounts.append((Path(source), target))
    return mounts


def mounted(service: dict[str, Any], container_path: str) -> Path:
    """The host file behind ``container_path``, through the service's bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted")


def test_the_stack_resolves_and_every_mounted_file_exists(resolved):
    services = resolved["services"]
    assert set(services) == {"engine", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert source.resolve().is_relative_to(ROOT), f"{name} mounts {source} outside the repo"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert sum(len(bind_mounts(s)) for s in services.values()) >= 5


def test_the_engine_keeps_its_journal_and_models_and_is_health_checked(resolved):
    engine = resolved["services"]["engine"]
    assert Path(engine["build"]["context"]) == ROOT
    assert (ROOT / engine["build"]["dockerfile"]).is_file()
    config = engine["command"][engine["command"].index("--config") + 1]
    assert (mounted(engine, f"/app/{config}")).is_file()  # the demo config
    named = {v.split(":")[1]: v.split(":")[0] for v in engine["volumes"] if v[0] != "/"}
    assert set(named) >= {"/app/var", "/app/models"}
    assert set(named.values()) <= set(resolved["volumes"])
    assert engine["environment"]["ENGINE_API_HOST"] == "0.0.0.0"
    assert "/health" in " ".join(engine["healthcheck"]["test"])
    assert engine["stop_signal"] == "SIGTERM"


def test_prometheus_scrapes_the_engine_service_and_loads_the_alert_rules(resolved):
    prometheus = resolved["services"]["prometheus"]
    (flag,) = [a for a in prometheus["command"] if a.startswith("--config.file=")]
    config_path = mounted(prometheus, flag.removeprefix("--config.file="))
    config = yaml.safe_load(config_path.read_text())
    rule_files = [config_path.parent / f for f in config["rule_files"]]
    assert [f.name for f in rule_files] == ["alerts.yml"]
    assert all(f.is_file() for f in rule_files)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "trade-engine"  # what alerts.yml and the dashboard select
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in resolved["services"]
    assert host != "prometheus"
    assert port == "8080"

    promtool = shutil.which("promtool")
    assert promtool, "`promtool` (Debian package prometheus) is missing: `make test` installs it"
    check = subprocess.run(
        [promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_grafana_gets_the_dashboard_and_a_datasource_on_the_prometheus_service(resolved):
    grafana = resolved["services"]["grafana"]
    datasources = mounted(grafana, "/etc/grafana/provisioning/datasources")
    (source,) = yaml.safe_load((datasources / "prometheus.yaml").read_text())["datasources"]
    url = urlsplit(source["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    providers = mounted(grafana, "/etc/grafana/provisioning/dashboards")
    (provider,) = yaml.safe_load((providers / "trade-engine.yaml").read_text())["providers"]
    folder = mounted(grafana, provider["options"]["path"])
    assert (folder / DASHBOARD.name).read_text() == DASHBOARD.read_text()
    assert source["uid"] == "prometheus"  # the dashboard's datasource variable's default


def test_a_missing_grafana_password_is_refused_with_a_clear_message(docker_compose, tmp_path):
    env = tmp_path / "env"
    env.write_text(
        "\n".join(
            line
            for line in ENV_EXAMPLE.read_text().splitlines()
            if not line.startswith("GRAFANA_ADMIN_PASSWORD=")
        )
    )
    result = compose_config(docker_compose, env)
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD in deploy/.env" in result.stderr
