"""The signing key never shows: not in logs (even unredacted), events, reprs or errors;
and with redaction on, not even when code logs it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
import structlog
from eth_account import Account
from prometheus_client import generate_latest

from adapters.evm.keys import SigningKeyError, load_signer
from adapters.uniswap_v2.executor import UniswapV2Executor
from engine.clock import SimulatedClock
from engine.config import Secrets
from engine.events import OrderFailed, OrderFilled, to_json
from engine.logs import configure_logging
from tests.chain_helpers import TOKEN, new_trader, order, outcome

pytest_plugins = ["tests.chain_fixtures"]

pytestmark = pytest.mark.integration


def forms(private_key: str) -> list[str]:
    """Every spelling of the key worth searching for."""
    bare = private_key.removeprefix("0x")
    return [bare, bare[:32], bare[32:]]  # compared case-insensitively


@contextmanager
def captured_logs(secrets: Iterable[str] | None) -> Iterator[io.StringIO]:
    """Debug-level JSON logs of everything (web3 and stdlib loggers included), redacting
    ``secrets`` as the daemon does (None: no redaction at all)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(level="debug", fmt="json", secrets=secrets)
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved
        structlog.reset_defaults()


@pytest.fixture
def log_output():
    """Logs with NO secret redaction, so the test sees whatever the code itself would leak."""
    with captured_logs(None) as buffer:
        yield buffer


async def test_a_run_of_fills_and_failures_never_shows_the_private_key(
    chain, make_executor, log_output
):
    trader = await new_trader(chain, base=TOKEN)
    harness = await make_executor(chain, trader)
    expired = await make_executor(
        chain, trader, clock=SimulatedClock(start_ns=10**18), deadline_clock="engine"
    )
    requests = [
        order("BUY", 100 * TOKEN),
        order("SELL", TOKEN // 2),
        order("SELL", 50 * TOKEN),  # insufficient balance
        order("BUY", TOKEN, min_amount_out=10**30),  # insufficient output
        order("BUY", 0),
    ]
    for request in requests:
        await harness.bus.publish(request)
        await outcome(harness, request.order_id)
    late = order("SELL", TOKEN // 10)
    await expired.bus.publish(late)
    assert (await outcome(expired, late.order_id)).reason == "EXPIRED"

    events = harness.recorder.events + expired.recorder.events
    assert len([e for e in events if isinstance(e, OrderFilled)]) == 2
    assert len([e for e in events if isinstance(e, OrderFailed)]) == 4
    logs = log_output.getvalue()
    assert "order.failed" in logs
    assert "Making request HTTP" in logs
    executor: UniswapV2Executor = harness.executor
    surfaces = {
        "logs": logs,
        "events": "\n".join(to_json(e).decode() for e in events),
        "metrics": generate_latest(harness.registry).decode(),
        "status": json.dumps(
            [executor.health()._asdict() for executor in (executor,)], default=str
        ),
        "reprs": repr(executor.signer)
        + str(executor.signer)
        + repr(executor.settings)
        + repr(vars(executor)),
    }
    for where, text in surfaces.items():
        for form in forms(trader.private_key):
            assert form.lower() not in text.lower(), f"key found in {where}"


async def test_with_redaction_on_secrets_logged_by_careless_code_never_reach_the_output(
    chain, make_executor
):
    trader = await new_trader(chain, base=TOKEN)
    admin_token = "admin-token-for-the-redaction-test"
    environment = {"ENGINE_PRIVATE_KEY": trader.private_key, "ENGINE_ADMIN_TOKEN": admin_token}
    bare_key = trader.private_key.removeprefix("0x")  # not key-shaped: only known values catch it
    with captured_logs(Secrets.from_env(environment).values()) as output:  # as `run` does
        harness = await make_executor(chain, trader)
        for request in (order("BUY", 10 * TOKEN), order("SELL", 50 * TOKEN)):
            await harness.bus.publish(request)
            await outcome(harness, request.order_id)
        careless = structlog.get_logger("test.careless")
        try:
            raise RuntimeError(f"cannot sign with {trader.private_key} ({bare_key})")
        except RuntimeError:
            careless.exception("careless.exception", detail=f"token={admin_token}")
        careless.warning("careless.fields", key=bare_key, nested={"keys": [trader.private_key]})
        logging.getLogger("some.library").warning("auth %s key %s", admin_token, bare_key)
    logs = output.getvalue()
    for event in ("order.failed", "careless.exception", "careless.fields", '"some.library"'):
        assert event in logs  # the careless lines were written...
    for what, secret in (("private key", bare_key), ("admin token", admin_token)):
        assert secret.lower() not in logs.lower(), f"the {what} is in the logs"
    assert "auth [REDACTED] key [REDACTED]" in logs  # ...redacted


def test_an_invalid_private_key_is_not_echoed_in_the_error():
    bad = "0x" + "zz" * 32
    with pytest.raises(SigningKeyError) as info:
        load_signer(Secrets.from_env({"ENGINE_PRIVATE_KEY": bad}))
    assert "zz" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_missing_key_names_the_settings_to_fix():
    with pytest.raises(SigningKeyError, match=r"ENGINE_PRIVATE_KEY.*ENGINE_KEYSTORE_PASSWORD"):
        load_signer(Secrets.from_env({}))


def test_keystore_file_with_password_from_the_environment_gives_the_same_account(tmp_path):
    account = Account.create()
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(account.key, "correct horse", iterations=2)))
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match=r"open to group or others \(mode 0644\)"):
        load_signer(Secrets.from_env({"ENGINE_KEYSTORE_PASSWORD": "correct horse"}), path)
    path.chmod(0o600)
    signer = load_signer(Secrets.from_env({"ENGINE_KEYSTORE_PASSWORD": "correct horse"}), path)
    assert signer.address == account.address
    assert account.key.hex() not in repr(signer)

    with pytest.raises(SigningKeyError, match="wrong ENGINE_KEYSTORE_PASSWORD") as info:
        load_signer(Secrets.from_env({"ENGINE_KEYSTORE_PASSWORD": "wrong horse!"}), path)
    assert "horse" not in str(info.value)
    with pytest.raises(SigningKeyError, match="needs ENGINE_KEYSTORE_PASSWORD"):
        load_signer(Secrets.from_env({}), path)
