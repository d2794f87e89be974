"""The going-live guide: linked from the README, and its config snippets valid."""

from __future__ import annotations

import re

import yaml

from engine.config_env import interpolate
from engine.registry import resolve_component_type
from tests.paths import ROOT

GUIDE = ROOT / "docs" / "going-live.md"


def test_the_readme_and_the_operations_guide_link_the_going_live_guide():
    assert "docs/going-live.md" in (ROOT / "README.md").read_text()
    assert "docs/going-live.md" in (ROOT / "docs" / "operations.md").read_text()


def test_every_component_in_the_guides_yaml_snippets_is_a_valid_config():
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert blocks
    environ = {"ENGINE_FORK_URL": "https://rpc.example/v3/key", "HOME": "/home/user"}
    checked = 0
    for block in blocks:
        for entry in yaml.safe_load(block):
            settings = interpolate(entry.get("config", {}), environ, str(GUIDE))
            resolve_component_type(entry["type"]).Config.model_validate(settings)
            checked += 1
    assert checked >= 2
