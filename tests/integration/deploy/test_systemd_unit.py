"""deploy/systemd/trade-engine.service passes `systemd-analyze verify` without a warning.

verify checks that ExecStart's program exists, so the unit's install paths
(/opt/trade-engine) are pointed at this checkout and the venv running the tests; the
rest of the unit is verified as shipped. systemd is not started (none runs here).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import EXIT_USAGE
from tests.paths import ROOT

pytestmark = pytest.mark.integration

UNIT = ROOT / "deploy" / "systemd" / "trade-engine.service"
INSTALLED = "/opt/trade-engine"


def verify(unit: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze (Debian package systemd) is not installed")
    return subprocess.run([binary, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def localised(tmp_path: Path, text: str) -> Path:
    program = Path(sys.executable).parent / "trade-engine"
    assert program.is_file(), f"{program}: the package is not installed in this venv"
    text = text.replace(f"{INSTALLED}/.venv/bin/trade-engine", str(program))
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED, str(ROOT)))
    return unit


def test_the_unit_verifies_cleanly(tmp_path):
    result = verify(localised(tmp_path, UNIT.read_text()))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_a_misspelt_setting_is_reported(tmp_path):
    """verify only warns (exit 0) on a bad value: the empty output above is what counts."""
    result = verify(localised(tmp_path, UNIT.read_text().replace("KillMode=mixed", "KillMode=x")))
    assert "kill mode" in result.stdout + result.stderr


def test_the_unit_runs_the_daemon_and_reloads_and_stops_it_by_signal():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert " run --config config/" in service["ExecStart"]
    assert (ROOT / service["ExecStart"].split("--config ")[1]).is_file()
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP: reload strategy configs
    assert service["KillSignal"] == "SIGTERM"  # clean shutdown
    # A bad config or journal: `run`'s exit code that restarting cannot fix.
    assert service["RestartPreventExitStatus"] == str(EXIT_USAGE)
    for path in service["ReadWritePaths"].split():
        assert path.removeprefix(f"{INSTALLED}/") in {"var", "models"}
