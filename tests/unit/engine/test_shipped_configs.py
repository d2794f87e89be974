"""Every engine config shipped in config/ passes `trade-engine config check` with the
environment its header documents, and names every variable it reads there; every
strategy file shipped beside them is valid with its defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from engine.config_paths import path_problems
from strategies.files import read_strategy_file
from tests.paths import ROOT

SHIPPED = sorted((ROOT / "config").glob("*.yaml"))
STRATEGY_FILES = sorted((ROOT / "config").glob("*/*.yaml"))
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
# What a user sets for a variable a config requires (no `:-default`), as its header says.
EXAMPLES = {
    "ENGINE_RPC_URL": "https://mainnet.example.org/v3/an-api-key",
}


def variables(path: Path) -> dict[str, bool]:
    """Variables the config reads (outside comments) → whether it requires them."""
    found: dict[str, bool] = {}
    for line in path.read_text().splitlines():
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for name, default in REFERENCE.findall(code):
            found[name] = found.get(name, False) or not default
    return found


def comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if "#" in line)


def test_the_live_configs_are_shipped():
    assert ROOT / "config" / "live-dex.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_the_check_with_its_documented_environment(path, monkeypatch, capsys):
    used = variables(path)
    undocumented = [name for name in used if name not in comments(path)]
    assert not undocumented, f"{path.name} reads {undocumented} without naming them in comments"
    for name, required in used.items():
        monkeypatch.delenv(name, raising=False)  # the defaults are what is checked
        if required:
            assert name in EXAMPLES, f"{path.name} requires {name}: add an example value here"
            monkeypatch.setenv(name, EXAMPLES[name])
    monkeypatch.chdir(ROOT)
    assert cli_main(["config", "check", str(path)]) == 0, capsys.readouterr().err


def test_a_required_variable_left_unset_fails_the_check_naming_it(monkeypatch, capsys):
    monkeypatch.delenv("ENGINE_RPC_URL", raising=False)
    monkeypatch.chdir(ROOT)
    assert cli_main(["config", "check", "config/live-dex.yaml"]) == 2
    assert "environment variable ENGINE_RPC_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_strategy_file_is_valid_with_its_defaults(path, monkeypatch):
    for name in variables(path):
        assert name in comments(path), f"{path} reads {name} without naming it in comments"
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)
    strategy = read_strategy_file(path)
    assert path_problems(strategy.settings, ()) == []
