"""Config loading: field paths in errors, unknown keys refused, secrets kept out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.candles import resolve_data_path
from engine.cli import build_parser, replay_config
from engine.cli import main as cli_main
from engine.config import ConfigError, Secrets
from engine.config_docs import render_configuration_reference
from engine.config_loading import load_engine_config
from tests.hostile_files import billion_laughs, fifo, nested_yaml
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
        "model_monitor", "retrain_supervisor", "prediction_api", "portfolio",
        "uniswap_v2_executor", "risk",
    ]  # fmt: skip
    assert config.api.host == "127.0.0.1"


def test_shipped_paper_config_is_valid():
    config = load_engine_config(ROOT / "config" / "paper.yaml")
    assert [c.type for c in config.components] == [
        "journal", "heartbeat", "replay", "features", "strategy_host", "model_monitor",
        "retrain_supervisor", "prediction_api", "portfolio", "paper_executor", "risk",
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


# -- hostile files: read safely, parsed with limits -------------------------------------


def checked_quickly(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`config check PATH`: exit 2 promptly (a FIFO or endless file would block for good;
    5 s, not less, because a loaded 2-core CI machine took > 0.5 s); what it printed."""
    build_parser()  # the commands' modules imported: not part of checking a file
    started = time.monotonic()
    assert cli_main(["config", "check", str(path)]) == 2
    assert time.monotonic() - started < 5
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (nested_yaml("name"),
         "line 1, column 70: invalid YAML: nested deeper than 64 levels (the limit)"),
        ("".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n",
         "line 64, column 127: invalid YAML: nested deeper than 64 levels (the limit)"),
        (billion_laughs("name"),
         "line 4, column 45: invalid YAML: aliases repeat more than 10000 values (the limit)"),
        ("name: &a [x, *a]\n",
         "line 1, column 14: invalid YAML: an alias inside the value it names"),
    ],
    ids=["nested flow", "nested blocks", "billion laughs", "recursive alias"],
)  # fmt: skip
def test_deep_nesting_and_alias_bombs_are_refused_fast_naming_file_and_line(
    tmp_path, capsys, text, expected
):
    path = write(tmp_path, text)
    assert checked_quickly(path, capsys) == f"{path}: {expected}\n"


def test_a_fifo_a_device_and_a_directory_are_refused_without_reading_them(tmp_path, capsys):
    with fifo(tmp_path / "fifo.yaml") as path:
        assert f"{path}: cannot read: not a regular file: it is a FIFO" in checked_quickly(
            path, capsys
        )
    device = tmp_path / "zero.yaml"
    device.symlink_to("/dev/zero")
    err = checked_quickly(device, capsys)
    assert f"{device}: cannot read: not a regular file: it is a character device" in err
    assert "it is a directory" in checked_quickly(tmp_path, capsys)


def test_a_config_over_1_mb_is_refused_before_it_is_read(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:
        handle.truncate(5 * 1024**3)  # sparse: 5 GB that take no disk
    assert checked_quickly(path, capsys) == (
        f"{path}: cannot read: 5 GB (5,368,709,120 bytes), larger than the 1 MB allowed\n"
    )


def test_a_config_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert problems_of(path) == ["not UTF-8 text: invalid continuation byte at byte 9"]


HUGE = "x" * 200_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"? {HUGE}\n: 1\n? {HUGE}\n: 2\n",
         ["line 3, column 3: invalid YAML: duplicate key 'xxx"]),
        (f"name: [{HUGE}]\nlog:\n  level: {HUGE}\n",
         ["name: input should be a valid string, got ['xxx", "log.level: input should be"]),
        (f"components:\n  - {{name: a, type: {HUGE}}}\n",
         ["components[0].type: unknown component type 'xxx"]),
        (f"components:\n  - {{name: a, type: replay, config: {{symbol: X/Y, path: {HUGE}}}}}\n",
         ["components[0].config.path: 'xxx"]),
    ],
    ids=["duplicate key", "values", "type", "path"],
)  # fmt: skip
def test_huge_values_are_cut_in_error_messages(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    assert cli_main(["config", "check", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(expected)
    shown = [line.removeprefix(f"{path}: ") for line in lines]
    assert [line[: len(e)] for line, e in zip(shown, expected, strict=True)] == expected
    assert all(len(line) < 400 + len(str(path)) for line in lines), [len(x) for x in lines]


# -- what a daemon needs: components, paths, registered types only ----------------------


def test_a_config_without_components_passes_loading_but_not_check(tmp_path, capsys):
    for text in ("", "components:\n  - {name: hb, type: heartbeat, enabled: false}\n"):
        path = write(tmp_path, text)
        load_engine_config(path)  # a valid file ...
        err = checked_quickly(path, capsys)  # ... that runs nothing
        assert err == (
            f"{path}: components: none enabled, so the daemon would run nothing; add the "
            "components to run (docs/configuration.md lists the types)\n"
        )


def test_config_check_refuses_paths_that_are_missing_or_of_the_wrong_kind(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    path = write(
        tmp_path,
        f"""
        components:
          - {{name: journal, type: journal, config: {{path: {a_file}/journal.sqlite}}}}
          - {{name: journal2, type: journal, config: {{path: {tmp_path}}}}}
          - {{name: market, type: replay, config: {{path: samples/nope.csv, symbol: X/Y}}}}
          - {{name: market2, type: replay, config: {{path: {tmp_path}/nope.csv, symbol: X/Y}}}}
          - {{name: strategy, type: strategy_host, config: {{dir: {a_file}}}}}
          - name: predict
            type: prediction_api
            config: {{model: m, models_dir: {a_file}/models}}
        """,
    )
    lines = checked_quickly(path, capsys).splitlines()
    samples = resolve_data_path("samples/nope.csv")
    assert lines == [
        f"{path}: components[0].config.path: '{a_file}/journal.sqlite' cannot be created: "
        f"{a_file} is not a directory",
        f"{path}: components[1].config.path: '{tmp_path}' is a directory, not a regular file",
        f"{path}: components[2].config.path: 'samples/nope.csv' ({samples}) does not exist",
        f"{path}: components[3].config.path: '{tmp_path}/nope.csv' does not exist",
        f"{path}: components[4].config.dir: '{a_file}' is a regular file, not a directory",
        f"{path}: components[5].config.models_dir: '{a_file}/models' cannot be created: "
        f"{a_file} is not a directory",
    ]


def test_paths_that_exist_or_can_be_created_pass_the_check(tmp_path, capsys):
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    path = write(
        tmp_path,
        f"""
        components:
          - {{name: journal, type: journal, config: {{path: {tmp_path}/new/dir/j.sqlite}}}}
          - {{name: market, type: replay, config: {{path: samples/BTC-USD_1d.csv, symbol: X/Y}}}}
          - {{name: strategy, type: strategy_host, config: {{dir: {strategies}}}}}
          - {{name: predict, type: prediction_api, config: {{model: m, models_dir: {tmp_path}/m}}}}
        """,
    )
    assert cli_main(["config", "check", str(path)]) == 0
    assert not (tmp_path / "new").exists(), "checking creates nothing"


def test_a_type_is_a_registered_name_never_a_module_to_import(tmp_path, monkeypatch, capsys):
    """A config naming `module:Class` must not make the engine import that module."""
    marker = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "from engine.heartbeat import HeartbeatSource as Planted\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, "components:\n  - {name: a, type: 'planted_module:Planted'}\n")
    err = checked_quickly(path, capsys)
    assert f"{path}: components[0].type: unknown component type 'planted_module:Planted'" in err
    assert "'trade_engine.components' entry points" in err
    assert not marker.exists(), "the module named in the config was imported"
    assert "planted_module" not in sys.modules
    typo = write(tmp_path, "components:\n  - {name: a, type: heartbeet}\n")
    assert "did you mean 'heartbeat'?" in checked_quickly(typo, capsys)


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ("5", "components: input should be a valid tuple, got 5"),
        ("[5]", "components[0]: input should be a valid dictionary or instance of"),
        ("[{name: m, type: replay, config: 7}]", "components[0].config: input should be a valid"),
        ("[{name: m, type: replay, config: {symbol: X/Y, path: x}}]", None),
    ],
    ids=["not a list", "not a mapping", "config not a mapping", "valid"],
)
def test_replay_validates_the_config_before_changing_anything(
    tmp_path, capsys, components, expected
):
    path = write(tmp_path, f"components: {components}\n")
    data = "samples/BTC-USD_1d.csv"
    if expected is None:
        config = replay_config(str(path), data)
        (entry,) = config.components
        assert (config.clock, entry.config) == ("simulated", {"symbol": "X/Y", "path": data})
        # the missing file named by --data fails the path check, naming the field
        with pytest.raises(ConfigError, match=r"components\[0\]\.config\.path: 'nope.csv' does"):
            replay_config(str(path), "nope.csv")
        return
    assert cli_main(["replay", "--config", str(path), "--data", data]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: {expected}"), err
