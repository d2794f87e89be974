"""Deploy WETH9, two test tokens, the Uniswap V2 Factory and Router02, and seed a pool;
or describe a Uniswap V2 already on a (forked) chain, and buy its tokens with ETH.

All bytecode comes from the npm artifacts (see :mod:`adapters.uniswap_v2.artifacts`). The
two tokens are the periphery package's test ``ERC20`` (fixed 18 decimals, the whole
supply minted to the deployer); the deployment calls them BASE and QUOTE. Factory and
Router come from the same packages on purpose: Router02 embeds the init-code hash of
the npm Pair bytecode, not mainnet's.

Deployment sends from an unlocked dev account (``eth_sendTransaction``), so it only
works on a dev chain such as anvil. So does funding: on a fork, :func:`buy_with_eth` has
the dev account swap its ETH for the tokens on the forked router (WETH path), so no token
is ever minted and no storage is patched.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from eth_typing import ChecksumAddress
from web3 import AsyncWeb3
from web3.types import TxParams

from adapters.uniswap_v2.artifacts import CORE, PERIPHERY, erc20_abi, load_artifact, router_abi

MAX_UINT256 = 2**256 - 1
DEPLOY_GAS = 6_000_000
CALL_GAS = 500_000


@dataclass(frozen=True, slots=True)
class UniswapV2Deployment:
    """Addresses and token facts of one deployment (or of a forked chain's Uniswap V2,
    ``deployer`` then the dev account that funds); ``symbol`` is ``BASE/QUOTE``."""

    chain_id: int
    deployer: ChecksumAddress
    weth: ChecksumAddress
    factory: ChecksumAddress
    router: ChecksumAddress
    pair: ChecksumAddress
    base_token: ChecksumAddress
    quote_token: ChecksumAddress
    base_decimals: int
    quote_decimals: int
    base_is_token0: bool
    block_number: int
    deploy_seconds: float
    symbol: str = "BASE/QUOTE"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_base_units(amount: Decimal | float | int | str, decimals: int) -> int:
    """Whole tokens → integer base units (exact for Decimal/str input)."""
    return int(Decimal(str(amount)) * (10**decimals))


async def _send(w3: AsyncWeb3[Any], tx: TxParams) -> Any:
    tx_hash = await w3.eth.send_transaction(tx)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"deployment transaction reverted: {tx_hash.to_0x_hex()}")
    return receipt


async def _deploy(
    w3: AsyncWeb3[Any], deployer: ChecksumAddress, package: str, name: str, *args: Any
) -> ChecksumAddress:
    artifact = load_artifact(package, name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = await factory.constructor(*args).build_transaction({"from": deployer, "gas": DEPLOY_GAS})
    receipt = await _send(w3, tx)
    return w3.to_checksum_address(receipt["contractAddress"])


async def deploy_uniswap_v2(
    w3: AsyncWeb3[Any],
    *,
    price: Decimal | float | str = 1000,
    base_liquidity: Decimal | float | str = 1000,
    token_supply: int = 10**36,
    deployer: ChecksumAddress | None = None,
    symbol: str = "BASE/QUOTE",
) -> UniswapV2Deployment:
    """Deploy everything and add liquidity so the pool's price is ``price`` QUOTE per BASE.

    ``base_liquidity`` is in whole BASE tokens; the QUOTE side is ``base_liquidity *
    price``. Both test tokens mint ``token_supply`` base units to the deployer.
    """
    started = time.perf_counter()
    if deployer is None:
        deployer = w3.to_checksum_address((await w3.eth.accounts)[0])
    chain_id = await w3.eth.chain_id
    weth = await _deploy(w3, deployer, PERIPHERY, "WETH9")
    base = await _deploy(w3, deployer, PERIPHERY, "ERC20", token_supply)
    quote = await _deploy(w3, deployer, PERIPHERY, "ERC20", token_supply)
    factory = await _deploy(w3, deployer, CORE, "UniswapV2Factory", deployer)
    router = await _deploy(w3, deployer, PERIPHERY, "UniswapV2Router02", factory, weth)

    base_c = w3.eth.contract(address=base, abi=erc20_abi())
    quote_c = w3.eth.contract(address=quote, abi=erc20_abi())
    base_decimals = await base_c.functions.decimals().call()
    quote_decimals = await quote_c.functions.decimals().call()
    amount_base = to_base_units(base_liquidity, base_decimals)
    amount_quote = to_base_units(Decimal(str(base_liquidity)) * Decimal(str(price)), quote_decimals)

    send = {"from": deployer, "gas": CALL_GAS}
    for token in (base_c, quote_c):
        await _send(w3, await token.functions.approve(router, MAX_UINT256).build_transaction(send))
    router_c = w3.eth.contract(address=router, abi=router_abi())
    block = await w3.eth.get_block("latest")
    add = router_c.functions.addLiquidity(
        base, quote, amount_base, amount_quote, 0, 0, deployer, block["timestamp"] + 3600
    )
    receipt = await _send(w3, await add.build_transaction({"from": deployer, "gas": DEPLOY_GAS}))

    factory_c = w3.eth.contract(address=factory, abi=load_artifact(CORE, "UniswapV2Factory").abi)
    pair = w3.to_checksum_address(await factory_c.functions.getPair(base, quote).call())
    return UniswapV2Deployment(
        chain_id=chain_id,
        deployer=deployer,
        weth=weth,
        factory=factory,
        router=router,
        pair=pair,
        base_token=base,
        quote_token=quote,
        base_decimals=base_decimals,
        quote_decimals=quote_decimals,
        base_is_token0=int(base, 16) < int(quote, 16),
        block_number=receipt["blockNumber"],
        deploy_seconds=time.perf_counter() - started,
        symbol=symbol,
    )


async def fund_account(
    w3: AsyncWeb3[Any],
    deployment: UniswapV2Deployment,
    account: ChecksumAddress,
    *,
    base_amount: int = 0,
    quote_amount: int = 0,
    eth_wei: int = 0,
) -> None:
    """Give ``account`` test tokens (from the deployer) and ETH (``anvil_setBalance``)."""
    send = {"from": deployment.deployer, "gas": CALL_GAS}
    for token, amount in (
        (deployment.base_token, base_amount),
        (deployment.quote_token, quote_amount),
    ):
        if amount:
            contract = w3.eth.contract(address=token, abi=erc20_abi())
            tx = await contract.functions.transfer(account, amount).build_transaction(send)
            await _send(w3, tx)
    if eth_wei:
        await w3.provider.make_request("anvil_setBalance", [account, hex(eth_wei)])  # type: ignore[arg-type]


async def existing_uniswap_v2(
    w3: AsyncWeb3[Any],
    *,
    router: ChecksumAddress,
    base_token: ChecksumAddress,
    quote_token: ChecksumAddress,
    symbol: str = "BASE/QUOTE",
) -> UniswapV2Deployment:
    """The Uniswap V2 at ``router`` on a dev chain (a fork), as a deployment: its WETH,
    factory and the ``base_token``/``quote_token`` pair, which must exist."""
    started = time.perf_counter()
    deployer = w3.to_checksum_address((await w3.eth.accounts)[0])
    router_c = w3.eth.contract(address=router, abi=router_abi())
    if not await w3.eth.get_code(router):
        raise RuntimeError(f"no contract at router {router} on the forked chain")
    factory = w3.to_checksum_address(await router_c.functions.factory().call())
    weth = w3.to_checksum_address(await router_c.functions.WETH().call())
    factory_c = w3.eth.contract(address=factory, abi=load_artifact(CORE, "UniswapV2Factory").abi)
    pair = w3.to_checksum_address(await factory_c.functions.getPair(base_token, quote_token).call())
    if int(pair, 16) == 0:
        raise RuntimeError(f"no Uniswap V2 pair for {symbol} at factory {factory}")
    decimals = [
        int(await w3.eth.contract(address=token, abi=erc20_abi()).functions.decimals().call())
        for token in (base_token, quote_token)
    ]
    return UniswapV2Deployment(
        chain_id=await w3.eth.chain_id,
        deployer=deployer,
        weth=weth,
        factory=factory,
        router=router,
        pair=pair,
        base_token=base_token,
        quote_token=quote_token,
        base_decimals=decimals[0],
        quote_decimals=decimals[1],
        base_is_token0=int(base_token, 16) < int(quote_token, 16),
        block_number=await w3.eth.block_number,
        deploy_seconds=time.perf_counter() - started,
        symbol=symbol,
    )


async def buy_with_eth(
    w3: AsyncWeb3[Any],
    deployment: UniswapV2Deployment,
    recipient: ChecksumAddress,
    token: ChecksumAddress,
    amount: int,
) -> int:
    """Get ``amount`` base units of ``token`` to ``recipient`` for the dev account's ETH:
    wrapped if ``token`` is WETH, else bought on the router through the WETH/``token``
    pool (``swapETHForExactTokens``). Returns the wei spent. Dev chains only: the dev
    account's balance is topped up with ``anvil_setBalance`` first."""
    payer = deployment.deployer
    weth = deployment.weth
    if token == weth:
        wei = amount
    else:
        router = w3.eth.contract(address=deployment.router, abi=router_abi())
        try:
            wei = (await router.functions.getAmountsIn(amount, [weth, token]).call())[0]
        except Exception as exc:
            raise RuntimeError(
                f"cannot buy {token} with ETH: no WETH/{token} pool with the liquidity on "
                f"router {deployment.router} ({type(exc).__name__})"
            ) from None
    balance = await w3.eth.get_balance(payer)
    await w3.provider.make_request("anvil_setBalance", [payer, hex(balance + wei + 10**18)])  # type: ignore[arg-type]
    send: TxParams = {"from": payer, "gas": CALL_GAS, "value": wei}  # type: ignore[typeddict-item]
    if token == weth:
        weth_c = w3.eth.contract(address=weth, abi=load_artifact(PERIPHERY, "WETH9").abi)
        await _send(w3, await weth_c.functions.deposit().build_transaction(send))
        transfer = weth_c.functions.transfer(recipient, amount)
        await _send(w3, await transfer.build_transaction({"from": payer, "gas": CALL_GAS}))
        return wei
    block = await w3.eth.get_block("latest")
    swap = router.functions.swapETHForExactTokens(
        amount, [weth, token], recipient, block["timestamp"] + 3600
    )
    await _send(w3, await swap.build_transaction(send))
    return wei


async def add_eth_liquidity(
    w3: AsyncWeb3[Any],
    deployment: UniswapV2Deployment,
    token: ChecksumAddress,
    token_amount: int,
    wei: int,
) -> ChecksumAddress:
    """Seed a WETH/``token`` pool from the deployer (who holds the test tokens): what
    :func:`buy_with_eth` needs on a chain that will be forked. Returns the pair."""
    deployer = deployment.deployer
    token_c = w3.eth.contract(address=token, abi=erc20_abi())
    approve = token_c.functions.approve(deployment.router, MAX_UINT256)
    await _send(w3, await approve.build_transaction({"from": deployer, "gas": CALL_GAS}))
    router = w3.eth.contract(address=deployment.router, abi=router_abi())
    block = await w3.eth.get_block("latest")
    add = router.functions.addLiquidityETH(
        token, token_amount, 0, 0, deployer, block["timestamp"] + 3600
    )
    send: TxParams = {"from": deployer, "gas": DEPLOY_GAS, "value": wei}  # type: ignore[typeddict-item]
    await _send(w3, await add.build_transaction(send))
    factory = w3.eth.contract(
        address=deployment.factory, abi=load_artifact(CORE, "UniswapV2Factory").abi
    )
    return w3.to_checksum_address(await factory.functions.getPair(deployment.weth, token).call())
