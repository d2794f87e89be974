"""An RPC URL's API key (in its path, query or user info) stays out of what is shown."""

from __future__ import annotations

import pytest

from adapters.evm.rpc import public_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown", "hidden"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545", []),
        ("http://127.0.0.1:8545/", "http://127.0.0.1:8545", []),
        (
            "https://mainnet.infura.io/v3/0123456789abcdef",
            "https://mainnet.infura.io/…",
            ["v3/0123456789abcdef"],
        ),
        (
            "https://rpc.example.org/?apikey=s3cr3t-k3y",
            "https://rpc.example.org/…",
            ["apikey=s3cr3t-k3y"],
        ),
        (
            "https://user:pa55word@node.example:8443",
            "https://node.example:8443/…",
            ["user", "pa55word"],
        ),
        ("not a url", "<rpc url>", ["not a url"]),
    ],
)
def test_public_url_shows_scheme_host_and_port_only(url, shown, hidden):
    assert public_url(url) == shown
    assert url_secrets(url) == hidden
    for secret in hidden:
        assert secret not in public_url(url)
