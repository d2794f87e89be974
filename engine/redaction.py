"""The one secret scrubber, for log lines and for text the engine publishes.

:class:`Redactor` replaces with :data:`REDACTED`:

- every known secret value (``Secrets.values()`` and any the caller adds), with and
  without a ``0x`` prefix, longest first; values under 8 characters are ignored, as
  they would redact ordinary text and real keys and tokens are long;
- anything shaped like a 32-byte hex private key (``0x`` and 64 hex digits), so a key
  the engine was never told about (decrypted from a keystore, say) cannot show either.

A transaction hash has the same shape as a key. Text that names known public hashes
passes them as ``public`` to keep them readable; a known secret is redacted regardless.

RPC URLs are half secret: providers put API keys in their path or query.
:func:`url_origin` is what a log may show of one, :func:`scrub_url` cleans text that
quotes one (an error message from a tool that was given it).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 8

KEY_SHAPED = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{64}(?![0-9A-Za-z])")


class Redactor:
    """Scrubs secret values and key-shaped hex from text and nested values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for secret in secrets for form in (secret, secret.removeprefix("0x"))}
        self._secrets = sorted(
            (form for form in forms if len(form) >= MIN_SECRET_CHARS), key=len, reverse=True
        )

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secret forms)"  # never the values

    def adding(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets``."""
        return Redactor([*self._secrets, *secrets])

    def scrub(self, text: str, public: Collection[str] = ()) -> str:
        """``text`` with secrets and key-shaped hex (other than ``public``) redacted."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        keep = {h.lower() for h in public}
        return KEY_SHAPED.sub(lambda m: m[0] if m[0].lower() in keep else REDACTED, text)

    def scrub_value(self, value: Any, public: Collection[str] = ()) -> Any:
        """:meth:`scrub` applied to every string in a value of dicts, lists and tuples."""
        if isinstance(value, str):
            return self.scrub(value, public)
        if isinstance(value, dict):
            return {k: self.scrub_value(v, public) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_value(v, public) for v in value]
        return value


def url_origin(url: str) -> str:
    """What a log may show of a URL: its scheme, host and port.

    RPC providers put API keys in the path (``https://mainnet.infura.io/v3/<key>``), the
    query or the user-info part, so those are dropped."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return REDACTED
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def scrub_url(text: str, url: str) -> str:
    """``text`` with ``url`` shown as its origin, and its path, query and user-info (an
    API key, perhaps, quoted apart from the rest) redacted."""
    text = text.replace(url, url_origin(url))
    parts = urlsplit(url)
    pieces = [parts.path.strip("/"), *parts.path.split("/"), parts.query]
    pieces += [value for _, _, value in (p.partition("=") for p in parts.query.split("&"))]
    pieces += [parts.username or "", parts.password or ""]
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) >= MIN_SECRET_CHARS:
            text = text.replace(piece, REDACTED)
    return text
