"""Which API addresses only this machine can reach (there, /status needs no token)."""

from __future__ import annotations

import pytest

from engine.admin import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_loopback_addresses_are_local(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "203.0.113.7", "example.com", ""]
)
def test_wildcards_other_addresses_and_host_names_are_not(host):
    assert not is_loopback(host)
