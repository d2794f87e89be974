"""Config loading: field paths in errors, unknown keys refused, secrets kept out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from engine.config import ConfigError, Secrets
from engine.config_docs import render_configuration_reference
from engine.config_loading import load_engine_config
from tests.paths import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    return info.value.problems


def test_shipped_default_config_is_the_dex_demo():
    config = load_engine_config(ROOT / "config" / "engine.yaml")
    assert [c.type for c in config.components] == [
        "journal", "heartbeat", "local_chain", "replay", "features", "strategy_host",
        "model_monitor", "prediction_api", "portfolio", "uniswap_v2_executor", "risk",
    ]  # fmt: skip
    assert config.api.host == "127.0.0.1"


def test_shipped_paper_config_is_valid():
    config = load_engine_config(ROOT / "config" / "paper.yaml")
    assert [c.type for c in config.components] == [
        "journal", "heartbeat", "replay", "features", "strategy_host", "model_monitor",
        "prediction_api", "portfolio", "paper_executor", "risk",
    ]  # fmt: skip
    assert config.api.host == "127.0.0.1"


def test_empty_file_gives_all_defaults(tmp_path):
    config = load_engine_config(write(tmp_path, ""))
    assert config.api.port == 8080
    assert config.components == ()


def test_bad_value_fails_with_file_and_field_path(tmp_path):
    path = write(tmp_path, "api:\n  port: 70000\nbus:\n  queue_capacity: -1\n")
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    message = str(info.value)
    assert f"{path}: api.port: must be <= 65535, got 70000" in message
    assert f"{path}: bus.queue_capacity: must be > 0, got -1" in message


def test_bad_component_setting_is_reported_with_its_path(tmp_path):
    path = write(
        tmp_path,
        """
        components:
          - name: hb
            type: heartbeat
            config: {interval_seconds: -1}
        """,
    )
    assert problems_of(path) == ["components[0].config.interval_seconds: must be > 0, got -1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apii: {}\n", "apii: unknown field (did you mean 'api'?)"),
        ("api:\n  prot: 1\n", "api.prot: unknown field (did you mean 'port'?)"),
        (
            "components:\n  - {name: hb, type: heartbeat, config: {intervall: 1}}\n",
            "components[0].config.intervall: unknown field",
        ),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(tmp_path, text, expected):
    problems = problems_of(write(tmp_path, text))
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicate_keys_are_rejected_with_their_line(tmp_path):
    problems = problems_of(write(tmp_path, "api:\n  port: 1\n  port: 2\n"))
    assert problems == ["line 3, column 3: invalid YAML: duplicate key 'port'"]


def test_invalid_yaml_names_line_and_column(tmp_path):
    problems = problems_of(write(tmp_path, "api:\n  port: [1\n"))
    assert problems[0].startswith("line 3, column 1: invalid YAML")


def test_wrong_type_and_top_level_list(tmp_path):
    assert problems_of(write(tmp_path, "api:\n  enabled: maybe\n"))[0].startswith(
        "api.enabled: input should be a valid boolean"
    )
    assert problems_of(write(tmp_path, "- 1\n")) == ["top level must be a mapping, got list"]


def test_missing_file_is_a_clear_error(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == ["cannot read: No such file or directory"]


def test_secret_in_config_is_refused_without_echoing_it(tmp_path):
    key = "0x" + "ab" * 32
    path = write(tmp_path, f"api:\n  private_key: '{key}'\n")
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    assert "ENGINE_PRIVATE_KEY" in str(info.value)
    assert key not in str(info.value)


def test_secrets_come_from_the_environment_and_do_not_print():
    key = "0x" + "cd" * 32
    secrets = Secrets.from_env({"ENGINE_PRIVATE_KEY": key, "ENGINE_ADMIN_TOKEN": ""})
    assert secrets.private_key is not None
    assert secrets.private_key.get_secret_value() == key
    assert secrets.admin_token is None
    assert key not in repr(secrets)
    assert key not in str(secrets)
    assert secrets.values() == [key]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("components:\n  - {name: a, type: nosuch}\n", "components[0].type: unknown component"),
        (
            "components:\n  - {name: a, type: heartbeat, depends_on: [ghost]}\n",
            "depends on unknown 'ghost'",
        ),
        (
            "components:\n  - {name: a, type: heartbeat, depends_on: [b]}\n"
            "  - {name: b, type: heartbeat, depends_on: [a]}\n",
            "dependency cycle: a → b → a",
        ),
        ("components:\n  - {name: Bad Name, type: heartbeat}\n", "components[0].name:"),
    ],
)
def test_component_graph_problems_are_reported(tmp_path, text, expected):
    problems = problems_of(write(tmp_path, text))
    assert any(expected in p for p in problems), problems


def test_config_check_command_exit_codes(tmp_path, capsys):
    good = ROOT / "config" / "engine.yaml"
    bad = write(tmp_path, "risk:\n  max_position: -1\n")
    assert cli_main(["config", "check", str(good)]) == 0
    assert cli_main(["config", "check", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: risk: unknown field" in err


def test_configuration_reference_is_up_to_date():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render_configuration_reference(), (
        "docs/configuration.md is stale: run `trade-engine config docs --out docs/configuration.md`"
    )


def test_console_script_runs_config_check():
    result = subprocess.run(
        [sys.executable, "-m", "engine", "config", "check", str(ROOT / "config" / "engine.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_replay_refuses_a_config_that_trades_on_a_real_chain():
    """A simulated clock racing through history would outrun every swap (and expire it)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "replay",
            "--config",
            str(ROOT / "config" / "engine.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "components chain, dex act on a real chain" in result.stderr
    assert "trade-engine run" in result.stderr
