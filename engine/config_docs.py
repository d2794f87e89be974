"""Generates docs/configuration.md from the config models, so the reference cannot drift.

A test compares the committed file with this output; regenerate it with
``trade-engine config docs --out docs/configuration.md``.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from engine.config import ComponentConfig, EngineConfig, Secrets
from engine.config_loading import MAX_ALIAS_VALUES, MAX_CONFIG_BYTES, MAX_YAML_DEPTH
from engine.config_paths import PathRule
from engine.registry import component_types, resolve_component_type
from engine.safe_files import size_text

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))

HEADER = f"""\
# Configuration reference

Generated from the config models by `trade-engine config docs`; do not edit by hand
(a test fails when this file is stale).

An engine config is one YAML file (`config/engine.yaml` is the default). Every section
and every key is optional unless marked *required*; unknown keys are errors, and so
are duplicate keys. Check a file without running it:

```
trade-engine config check config/engine.yaml
```

Errors name the file and the field path, one line each, e.g.
`config/engine.yaml: api.port: must be <= 65535, got 70000`. Besides the values,
`config check` (and `run`, `replay`) checks that there is at least one component and
that every path a component names exists with the right kind, or can be created
where it is created if missing.

A component `type` is only ever a registered name (the `trade_engine.components`
entry points; an installed package adds its own there): a config never names a
module to import. Limits on a config file (and a strategy file), so that no file can
hang or stall the engine: a regular file (never a FIFO or a device), at most
{size_text(MAX_CONFIG_BYTES)}, nested at most {MAX_YAML_DEPTH} levels, YAML aliases
repeating at most {MAX_ALIAS_VALUES:,} values in all.

Values from the environment: `${{VAR}}` or `${{VAR:-default}}` in any string value of
an engine config or a strategy file (`rpc_url: ${{ENGINE_RPC_URL}}`, `symbol:
${{ENGINE_SYMBOL:-BTC/USDT}}`); `$$` is a literal `$`. A variable unset or empty with
no default is an error naming the file and the field. The secret variables
({", ".join(f"`{v}`" for v in Secrets.ENV_VARS.values())}) are refused there: the
engine reads them itself.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list of {_type_name(args[0])}"
    if origin in (dict, typing.Mapping):
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "*required*"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "*required*"
    if value is None:
        return "`null`"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    if value in ((), {}, []):
        return "empty"
    return f"`{value}`"


def _constraints(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, symbol in _BOUNDS:
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{symbol} {bound}")
        if getattr(meta, "min_length", None):
            parts.append(f"length >= {meta.min_length}")
        if getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
        if isinstance(meta, PathRule):
            parts.append(meta.describe())
    return ", ".join(parts)


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = field.description or ""
        constraints = _constraints(field)
        if constraints:
            description = f"{description} ({constraints})" if description else constraints
        rows.append(
            f"| `{prefix}{name}` | {_type_name(field.annotation)} | {_default(field)} "
            f"| {description} |"
        )
    return rows


def _sections(model: type[BaseModel], prefix: str = "") -> list[str]:
    lines = _table(model, prefix)
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += ["", f"### `{prefix}{name}`", "", *_sections(annotation, f"{prefix}{name}.")]
    return lines


def render_configuration_reference() -> str:
    lines = [HEADER, "## Engine", "", *_sections(EngineConfig)]
    lines += [
        "",
        "### `components[]`",
        "",
        "Each entry of `components` is one component the daemon runs:",
        "",
        *_table(ComponentConfig, ""),
        "",
        "## Component types",
        "",
        "Settings go under the entry's `config:` key.",
    ]
    for type_name in sorted(component_types()):
        factory = resolve_component_type(type_name)
        summary = (factory.__doc__ or "").strip().splitlines()[0:1]
        lines += ["", f"### `{type_name}`", ""]
        if summary:
            lines += [summary[0], ""]
        lines += _table(factory.Config, "")
    lines += [
        "",
        "## Secrets",
        "",
        "Secrets are never read from config files (a key that looks like one is an",
        "error); they come from the environment only and are redacted from logs.",
        "",
        "| variable | used for |",
        "|---|---|",
    ]
    purposes = {
        "private_key": "signing DEX transactions (hex private key)",
        "keystore_password": "decrypting the keystore file, instead of a raw key",
        "admin_token": "bearer token for the admin endpoints; unset disables them",
    }
    for field, variable in Secrets.ENV_VARS.items():
        lines.append(f"| `{variable}` | {purposes[field]} |")
    return "\n".join(lines) + "\n"
