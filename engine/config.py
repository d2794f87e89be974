"""Typed engine configuration: models, YAML loading, validation and secrets.

Every model forbids unknown fields and is frozen. A bad file (read by
:mod:`engine.config_loading`) fails with one line per problem naming the file and the
field path, e.g.
``config/engine.yaml: api.port: must be <= 65535, got 70000``. Secrets never come from
YAML: they are read from the environment (see :class:`Secrets`) so they cannot end up
in a committed file, a log line or an error message. An error line never shows a secret
either: every line passes the one redactor (:mod:`engine.redaction`), which knows the
secrets set in the environment and anything shaped like a private key, so a key pasted
into the wrong field is shown as ``[REDACTED]``; values are cut to a readable length.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from engine.bus import Backpressure
from engine.component import DependencyError, start_order
from engine.redaction import Redactor


class StrictModel(BaseModel):
    """Base for every config model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: human console output on a TTY, JSON lines otherwise."
    )


class ApiConfig(StrictModel):
    enabled: bool = Field(True, description="Serve /health, /ready and /metrics over HTTP.")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to bind. On any address but a loopback one (127.0.0.1, ::1, "
        "localhost), `GET /status` needs the admin token too.",
    )
    port: int = Field(
        8080, ge=0, le=65535, description="TCP port; 0 picks a free one (logged at start)."
    )
    max_connections: int = Field(
        512,
        ge=1,
        le=65536,
        description="Most connections open at once. At the cap, a new connection closes the "
        "longest-open one that is not answering a request (idle, or its header or body "
        "still arriving); if every one is answering, the new one gets a 503.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A connection that has not sent a whole request header this long after "
        "opening (or after its previous answer) is closed; idle keep-alive ones too.",
    )
    body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A request body not whole this long after its header is answered 408 "
        "and its connection closed.",
    )


class BusConfig(StrictModel):
    queue_capacity: int = Field(
        1024, gt=0, description="Events queued per async subscriber before backpressure."
    )
    backpressure: Backpressure = Field(
        Backpressure.BLOCK,
        description="Default policy when a queue is full: `block` the source or `drop_oldest`.",
    )
    latency_sample_every: int = Field(
        8,
        ge=0,
        description="Time one handler call in N for trade_engine_bus_handler_duration_seconds; "
        "1 times every call, 0 none.",
    )


COMPONENT_NAME = r"^[a-z][a-z0-9_-]{0,62}$"


class ComponentConfig(StrictModel):
    name: str = Field(
        pattern=COMPONENT_NAME, description="Unique name, used in logs and metric labels."
    )
    type: str = Field(
        min_length=1,
        description="A registered component type (see below).",
    )
    enabled: bool = Field(True, description="Set false to keep the entry but not run it.")
    depends_on: tuple[str, ...] = Field(
        (), description="Names of components that must start before this one."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Settings of the component type (see below)."
    )


class EngineConfig(StrictModel):
    name: str = Field("trade-engine", min_length=1, description="Instance name, in logs.")
    clock: Literal["live", "simulated"] = Field(
        "live", description="`simulated` runs replays as fast as the CPU allows."
    )
    shutdown_timeout_seconds: float = Field(
        4.0, gt=0, le=60, description="Budget for stopping components and draining the bus."
    )
    log: LogConfig = Field(default_factory=LogConfig, description="Logging to stdout.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="The HTTP server.")
    bus: BusConfig = Field(default_factory=BusConfig, description="The internal event bus.")
    components: tuple[ComponentConfig, ...] = Field(
        (), description="What the daemon runs, started in dependency order."
    )

    @model_validator(mode="after")
    def _check_component_graph(self) -> EngineConfig:
        try:
            start_order(c for c in self.components if c.enabled)
        except DependencyError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def enabled_components(self) -> tuple[ComponentConfig, ...]:
        return tuple(c for c in self.components if c.enabled)


# -- secrets ---------------------------------------------------------------------------


class Secrets(BaseModel):
    """Secret values, read only from the environment; ``repr`` never shows them."""

    model_config = ConfigDict(frozen=True)

    ENV_VARS: ClassVar[dict[str, str]] = {
        "private_key": "ENGINE_PRIVATE_KEY",
        "keystore_password": "ENGINE_KEYSTORE_PASSWORD",
        "admin_token": "ENGINE_ADMIN_TOKEN",
    }

    private_key: SecretStr | None = None
    keystore_password: SecretStr | None = None
    admin_token: SecretStr | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        values = {field: env.get(var) or None for field, var in cls.ENV_VARS.items()}
        return cls(**values)

    def values(self) -> list[str]:
        """The secret strings themselves, for log redaction."""
        return [
            s.get_secret_value()
            for s in (self.private_key, self.keystore_password, self.admin_token)
            if s is not None
        ]

    def redactor(self) -> Redactor:
        """The redactor for text a user sees: these secrets and key-shaped hex."""
        return Redactor(self.values())


_SECRET_KEY = re.compile(r"(private|secret|passw|token|mnemonic|seed_phrase|api_key)", re.I)


# -- loading and errors ----------------------------------------------------------------


SHOWN_VALUE_CHARS = 60  # a value quoted in an error
SHOWN_KEY_CHARS = 64  # one key of a field path
PROBLEM_CHARS = 500  # a whole problem line


def shorten(text: str, limit: int = SHOWN_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...``): a value shown in a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_redactor(redactor: Redactor | None) -> Redactor:
    """``redactor``, or by default one that knows the secrets set in the environment:
    config errors are raised before (and by code that never sees) the daemon's Secrets."""
    return redactor if redactor is not None else Secrets.from_env().redactor()


class ConfigError(ValueError):
    """A config file could not be read or is invalid; ``problems`` has one line each.

    Each line is redacted (``redactor``, by default the environment's secrets and
    key-shaped hex) and then cut to :data:`PROBLEM_CHARS`, in that order: a cut first
    could leave a key no longer key-shaped, and show most of it.
    """

    def __init__(self, source: str, problems: list[str], redactor: Redactor | None = None) -> None:
        redactor = _user_redactor(redactor)
        self.source = source
        self.problems = [shorten(redactor.scrub(p), PROBLEM_CHARS) for p in problems]
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


def format_location(loc: tuple[int | str, ...]) -> str:
    """``("components", 0, "config", "x")`` → ``components[0].config.x``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = shorten(str(part), SHOWN_KEY_CHARS)
            out += f".{key}" if out else key
    return out or "(top level)"


def _show(value: Any, redactor: Redactor) -> str:
    """A value for an error line: redacted, then cut (a cut key would not look like one)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return shorten(redactor.scrub(text))


# pydantic error type → (symbol shown, key of the bound in the error's ctx)
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def describe_error(
    error: Any,
    model: type[BaseModel] | None = None,
    prefix: tuple[int | str, ...] = (),
    redactor: Redactor | None = None,
) -> str:
    """One human line for one pydantic error, never echoing a secret or a secret-looking
    value (``redactor``: by default the environment's secrets and key-shaped hex).

    ``prefix`` is where ``model`` sits in the file (e.g. ``components[0].config``).
    """
    redactor = _user_redactor(redactor)
    loc = tuple(error["loc"])
    path = format_location((*prefix, *loc))
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    field = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if _SECRET_KEY.search(field):
            env = ", ".join(Secrets.ENV_VARS.values())
            return (
                f"{path}: secrets are not accepted in config files; "
                f"set them in the environment ({env})"
            )
        hint = _closest_field(model, loc)
        return f"{path}: unknown field{hint}"
    if kind == "missing":
        return f"{path}: required field is missing"
    if _SECRET_KEY.search(field):
        return f"{path}: {error['msg'].lower()}"
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "must be > 0", not "> 0.0"
        return f"{path}: must be {symbol} {bound}, got {_show(value, redactor)}"
    message = error["msg"]
    message = message[0].lower() + message[1:] if message else message
    if kind.startswith("value_error") or kind == "assertion_error":
        message = message.removeprefix("value error, ")
        return f"{path}: {message}"
    return f"{path}: {message}, got {_show(value, redactor)}"


def _closest_field(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """ " (did you mean 'x'?)" for a misspelt key, found by walking ``loc`` in ``model``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return ""
        current = _model_of(field.annotation)
    fields = list(getattr(current, "model_fields", {}))
    match = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def validation_problems(
    exc: ValidationError,
    model: type[BaseModel],
    prefix: tuple[int | str, ...] = (),
    redactor: Redactor | None = None,
) -> list[str]:
    redactor = _user_redactor(redactor)
    return [describe_error(err, model, prefix, redactor) for err in exc.errors()]
