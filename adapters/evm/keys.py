"""The executor's signing key: from ``ENGINE_PRIVATE_KEY`` or an encrypted keystore.

The key is held only inside :class:`Signer`; its ``repr`` and every error raised here
name the address or the source, never the key. Signing is local (eth-account, which
uses coincurve when it is installed: about 1 ms a transaction instead of 5.7 ms).

Keystores are V3 JSON files encrypted with a password (eth-account's scrypt KDF). A
keystore that group or others may read or write is refused: on a shared machine its
password is the only thing between another user and the funds. :func:`new_keystore`
writes one with mode 0600 and never overwrites a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3

from engine.config import Secrets
from engine.config_paths import open_to_others


class SigningKeyError(RuntimeError):
    """No usable signing key; the message says which setting to fix, never the key."""


class Signer:
    """Signs transactions with one private key; shows only its address."""

    __slots__ = ("__account", "address")

    def __init__(self, account: LocalAccount) -> None:
        self.__account = account
        self.address: ChecksumAddress = account.address

    def sign(self, tx: dict[str, Any]) -> SignedTransaction:
        return self.__account.sign_transaction(tx)

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Signer cannot be pickled or copied")


def signer_from_private_key(private_key: str) -> Signer:
    try:
        return Signer(Account.from_key(private_key))
    except Exception:
        # The library's message may quote the value: do not chain it.
        raise SigningKeyError("ENGINE_PRIVATE_KEY is not a valid 32-byte hex private key") from None


def check_keystore_mode(path: Path) -> None:
    """Refuse a keystore other users may read or write (a group/other permission bit)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise SigningKeyError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
    if open_to_others(mode):
        raise SigningKeyError(
            f"keystore {path} is open to group or others (mode {mode:04o}): run `chmod 600 {path}`"
        )


def signer_from_keystore(path: Path, password: str) -> Signer:
    check_keystore_mode(path)
    try:
        keyfile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read keystore {path}: {type(exc).__name__}") from None
    try:
        key = Account.decrypt(keyfile, password)
    except Exception:
        raise SigningKeyError(
            f"cannot decrypt keystore {path}: wrong ENGINE_KEYSTORE_PASSWORD or bad file"
        ) from None
    return Signer(Account.from_key(key))


def load_signer(secrets: Secrets, keystore_path: Path | None = None) -> Signer:
    """The signer from a keystore file (if configured) or ``ENGINE_PRIVATE_KEY``."""
    if keystore_path is not None:
        if secrets.keystore_password is None:
            raise SigningKeyError(
                f"keystore {keystore_path} needs ENGINE_KEYSTORE_PASSWORD to be set"
            )
        return signer_from_keystore(keystore_path, secrets.keystore_password.get_secret_value())
    if secrets.private_key is None:
        raise SigningKeyError(
            "no signing key: set ENGINE_PRIVATE_KEY, or keystore_path and ENGINE_KEYSTORE_PASSWORD"
        )
    return signer_from_private_key(secrets.private_key.get_secret_value())


def new_keystore(path: Path, password: str) -> ChecksumAddress:
    """Create a fresh key, write it encrypted to ``path`` (mode 0600, never over an existing
    file) and return its address."""
    if not password:
        raise SigningKeyError("an empty password would leave the keystore unprotected")
    account = Account.create()
    keyfile = Account.encrypt(account.key, password)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} exists: not overwriting a keystore") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(keyfile, out)
    return account.address


def keystore_address(path: Path) -> ChecksumAddress:
    """The address a keystore holds the key of (no password needed: it is stored clear)."""
    try:
        keyfile = json.loads(path.read_text())
        return Web3.to_checksum_address("0x" + str(keyfile["address"]).removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a keystore: {type(exc).__name__}") from None
