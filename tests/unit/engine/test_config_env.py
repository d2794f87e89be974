"""``${VAR}`` interpolation in config files: values from the environment, clear errors,
never a secret."""

from __future__ import annotations

import pytest

from engine.config import ConfigError
from engine.config_env import interpolate
from engine.config_loading import load_engine_config


def test_references_defaults_and_literal_dollars_are_replaced_in_every_string():
    data = {
        "api": {"port": "${PORT}", "host": "${HOST:-127.0.0.1}"},
        "components": [{"config": {"url": "http://${HOST:-localhost}:${PORT}/v1", "note": "$$5"}}],
        "count": 3,
    }
    done = interpolate(data, {"PORT": "9090"}, "x.yaml")
    assert done == {
        "api": {"port": "9090", "host": "127.0.0.1"},
        "components": [{"config": {"url": "http://localhost:9090/v1", "note": "$5"}}],
        "count": 3,
    }


def test_an_unset_variable_without_default_names_the_file_and_field():
    with pytest.raises(ConfigError) as info:
        interpolate({"components": [{"config": {"rpc_url": "${ENGINE_RPC_URL}"}}]}, {}, "live.yaml")
    assert str(info.value) == (
        "live.yaml: components[0].config.rpc_url: environment variable ENGINE_RPC_URL is not "
        "set (and ${ENGINE_RPC_URL} has no :-default)"
    )
    empty = {"ENGINE_RPC_URL": ""}  # set but empty: the same (a default would apply)
    with pytest.raises(ConfigError, match="ENGINE_RPC_URL is not set"):
        interpolate({"x": "${ENGINE_RPC_URL}"}, empty, "live.yaml")


def test_a_secret_variable_is_refused_and_never_copied_into_the_config():
    key = "ab" * 32
    with pytest.raises(ConfigError) as info:
        interpolate({"note": "${ENGINE_PRIVATE_KEY}"}, {"ENGINE_PRIVATE_KEY": key}, "c.yaml")
    assert "is a secret" in str(info.value)
    assert key not in str(info.value)
    with pytest.raises(ConfigError, match="not a variable reference"):
        interpolate({"note": "${not valid}"}, {}, "c.yaml")


def test_a_config_file_reads_its_values_from_the_environment(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("api:\n  port: ${TEST_PORT:-8081}\n  host: ${TEST_HOST}\n")
    config = load_engine_config(path, {"TEST_HOST": "127.0.0.2"})
    assert (config.api.host, config.api.port) == ("127.0.0.2", 8081)
    with pytest.raises(ConfigError, match=r"api\.host: environment variable TEST_HOST"):
        load_engine_config(path, {})
