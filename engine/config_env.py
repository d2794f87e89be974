"""``${VAR}`` and ``${VAR:-default}`` in config files: values from the environment.

Interpolated in every string of a parsed config (keys are left alone), so one file
serves several machines: ``rpc_url: ${ENGINE_RPC_URL}``, ``symbol:
${ENGINE_SYMBOL:-BTC/USDT}``. A variable that is unset (or empty) with no default is an
error naming the file and the field; ``$$`` is a literal ``$``. The secret variables
(:attr:`engine.config.Secrets.ENV_VARS`) are refused: the engine reads them itself, and a
secret copied into a config value would travel wherever the config goes (``/status``,
error messages, a pasted file). Values stay strings; the config models convert them
(``port: ${PORT:-8080}`` is a number once validated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.config import ConfigError, Secrets, format_location

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


def interpolate(data: Any, environ: Mapping[str, str], source: str) -> Any:
    """``data`` (a parsed config) with every ``${...}`` in its strings replaced."""
    problems: list[str] = []
    result = _walk(data, environ, (), problems)
    if problems:
        raise ConfigError(source, problems)
    return result


def _walk(value: Any, environ: Mapping[str, str], at: tuple[Any, ...], problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, environ, (*at, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, environ, (*at, i), problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        return _substitute(value, environ, at, problems)
    return value


def _substitute(
    text: str, environ: Mapping[str, str], at: tuple[Any, ...], problems: list[str]
) -> str:
    secret_names = set(Secrets.ENV_VARS.values())

    def replace(match: re.Match[str]) -> str:
        whole, name, default = match.group(0), match.group(1), match.group(2)
        if whole == "$$":
            return "$"
        where = format_location(at) or "(top level)"
        if name is None:
            problems.append(f"{where}: {whole!r} is not a variable reference: use ${{NAME}}")
            return whole
        if name in secret_names:
            problems.append(
                f"{where}: ${{{name}}} is a secret: the engine reads it from the environment "
                "itself; do not put it in a config"
            )
            return whole
        value = environ.get(name) or ""
        if value:
            return value
        if default is not None:
            return default
        problems.append(
            f"{where}: environment variable {name} is not set (and ${{{name}}} has no :-default)"
        )
        return whole

    return _REFERENCE.sub(replace, text)
