"""One scrubber for logs and published text: secret values and key-shaped hex."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from engine.config import PROBLEM_CHARS, ConfigError
from engine.config_loading import load_engine_config
from engine.logs import configure_logging
from engine.redaction import REDACTED, Redactor, scrub_url, url_origin

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
OTHER_KEY = "0x" + "ab" * 32
TX_HASH = "0x" + "12" * 32


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mainnet.infura.io/v3/0123456789abcdef", "https://mainnet.infura.io"),
        ("https://user:pass1234@node.example:8545/rpc?key=abc", "https://node.example:8545"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("not a url", REDACTED),
    ],
)
def test_a_url_is_shown_by_its_origin_only(url, shown):
    assert url_origin(url) == shown


def test_scrub_url_replaces_the_url_and_its_key_quoted_apart():
    url = "https://eth.provider.example/v2/SeCrEtKeY0123456789"
    text = f"error sending request for url ({url}); key SeCrEtKeY0123456789 rejected"
    scrubbed = scrub_url(text, url)
    assert "SeCrEtKeY0123456789" not in scrubbed
    assert "https://eth.provider.example" in scrubbed


def test_known_secrets_are_redacted_with_and_without_their_0x_prefix():
    redactor = Redactor([KEY, "admin-token-123"])
    text = f"key {KEY} bare {KEY[2:]} token admin-token-123"
    assert redactor.scrub(text) == f"key {REDACTED} bare {REDACTED} token {REDACTED}"


def test_short_values_are_not_treated_as_secrets():
    assert Redactor(["abc"]).scrub("abc abcdef") == "abc abcdef"


def test_anything_shaped_like_a_private_key_is_redacted_even_if_unknown():
    redactor = Redactor()
    assert redactor.scrub(f"signer {OTHER_KEY.upper().replace('0X', '0x')}.") == (
        f"signer {REDACTED}."
    )
    longer = "0x" + "ab" * 40  # calldata, not a key
    assert redactor.scrub(longer) == longer


def test_public_hashes_stay_readable_but_a_known_secret_never_does():
    redactor = Redactor([KEY])
    text = f"{TX_HASH} reverted; {OTHER_KEY}; {KEY}"
    assert redactor.scrub(text, public=[TX_HASH, KEY]) == (
        f"{TX_HASH} reverted; {REDACTED}; {REDACTED}"
    )


def test_repr_never_shows_the_secrets():
    redactor = Redactor([KEY]).adding(["another-secret"])
    assert KEY[2:] not in repr(redactor)
    assert "another-secret" not in repr(redactor)
    assert redactor.scrub("another-secret") == REDACTED


def test_log_lines_and_exception_text_are_redacted_but_tx_hash_fields_kept():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(level="info", fmt="json", secrets=["hunter2-password"])
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        log = structlog.get_logger("test")
        try:
            raise RuntimeError(f"bad key {OTHER_KEY} with hunter2-password")
        except RuntimeError:
            log.exception("failed", tx=TX_HASH, detail=f"{TX_HASH} {OTHER_KEY}")
    finally:
        root.handlers[:], root.level = saved
        structlog.reset_defaults()
    line = json.loads(buffer.getvalue().splitlines()[-1])
    assert line["tx"] == TX_HASH
    assert line["detail"] == f"{REDACTED} {REDACTED}"
    assert OTHER_KEY not in line["exception"]
    assert "hunter2" not in line["exception"]


# -- config errors -----------------------------------------------------------------------

ADMIN_TOKEN = "admin-token-pasted-in-the-wrong-field"
HUGE = "x" * 100_000


def config_problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            f"api:\n  port: '{KEY}'\n  max_connections: '{ADMIN_TOKEN}'\n"
            f"bus:\n  queue_capacity: '{OTHER_KEY}'\n",
            3,
        ),
        (f"components:\n  - {{name: a, type: heartbeat, depends_on: ['{ADMIN_TOKEN}']}}\n", 1),
    ],
    ids=["values", "message"],
)
def test_a_key_or_a_secret_pasted_into_a_plain_field_is_redacted_in_config_errors(
    tmp_path, monkeypatch, text, redacted
):
    monkeypatch.setenv("ENGINE_PRIVATE_KEY", KEY)
    monkeypatch.setenv("ENGINE_ADMIN_TOKEN", ADMIN_TOKEN)
    message = config_problems(tmp_path, text)
    assert message.count(REDACTED) == redacted, message
    for secret in (KEY, KEY[2:40], ADMIN_TOKEN, ADMIN_TOKEN[:20], OTHER_KEY[2:40]):
        assert secret not in message  # not whole, and not cut short either


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"api:\n  port: '{HUGE}'\n  ? '{HUGE}'\n  : 1\n", ["valid integer", "unknown field"]),
        (f"components:\n  - {{name: a, type: heartbeat, depends_on: ['{HUGE}']}}\n", ["depends"]),
    ],
    ids=["value and key", "message"],
)
def test_values_keys_and_messages_in_config_errors_are_cut_to_a_readable_length(
    tmp_path, text, words
):
    problems = config_problems(tmp_path, text).splitlines()
    assert len(problems) == len(words)
    for line, word in zip(problems, words, strict=True):
        assert len(line) < len(str(tmp_path)) + PROBLEM_CHARS + 20
        assert word in line  # what is wrong stays in view


def test_config_check_redacts_a_pasted_key_with_the_private_key_set(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text(f"api:\n  port: '{KEY}'\nname: x\nlog:\n  level: '{KEY[2:]}'\n")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "config", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ENGINE_PRIVATE_KEY": KEY},
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{path}: api.port:" in result.stderr
    assert result.stderr.count(REDACTED) == 2, result.stderr
    assert KEY[2:30] not in result.stderr + result.stdout
