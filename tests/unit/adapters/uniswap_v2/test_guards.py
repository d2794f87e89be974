"""The executor's start-up guards on the chain and the account, message by message."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.uniswap_v2.config import UniswapV2ExecutorConfig
from adapters.uniswap_v2.guards import check_chain

ROUTER = "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
ME = "0x00000000000000000000000000000000000000A1"
KEYED_URL = "https://mainnet.infura.io/v3/0123456789abcdef0123"


def config(**settings: Any) -> UniswapV2ExecutorConfig:
    addresses = {"router": ROUTER, "base_token": WETH, "quote_token": USDC, "symbol": "WETH/USDC"}
    return UniswapV2ExecutorConfig.model_validate({**addresses, "rpc_url": KEYED_URL, **settings})


def test_a_chain_id_mismatch_names_both_ids_and_not_the_urls_key():
    with pytest.raises(RuntimeError) as info:
        check_chain(config(chain_id=1, dry_run=True), 11155111, None)
    assert str(info.value) == (
        "chain id mismatch: the node at https://mainnet.infura.io/… is chain 11155111, but "
        "`chain_id` is 1: point rpc_url at a node of chain 1, or correct chain_id"
    )


@pytest.mark.parametrize("node", [1, 10, 8453, 11155111])
def test_sending_off_the_dev_chain_needs_allow_real_funds(node):
    with pytest.raises(RuntimeError, match="`allow_real_funds: true`"):
        check_chain(config(), node, ME)
    check_chain(config(allow_real_funds=True), node, ME)
    check_chain(config(dry_run=True), node, None)  # a dry run sends nothing


def test_the_dev_chain_needs_no_opt_in():
    check_chain(config(chain_id=31337), 31337, ME)


def test_a_key_for_another_address_than_account_is_refused():
    other = "0x00000000000000000000000000000000000000b2"
    with pytest.raises(RuntimeError, match=f"the signing key is for {ME}, but `account` is 0x"):
        check_chain(config(account=other), 31337, ME)
    check_chain(config(account=ME.lower()), 31337, ME)  # checksummed on validation


def test_an_empty_account_from_an_unset_variable_is_none():
    assert config(account="").account is None
