"""``trade-engine keys new|address``: encrypted V3 keystores for the DEX executor.

The password comes from ``ENGINE_KEYSTORE_PASSWORD`` or, on a terminal, a prompt
(asked twice for a new keystore). The key is never printed; only the address is.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_USAGE = 0, 2


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create and read encrypted keystores")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    new = sub.add_parser("new", help="a fresh key in an encrypted keystore (mode 0600)")
    new.add_argument("--out", required=True, type=Path, help="keystore file to create")
    new.set_defaults(handler=_cmd_new)
    address = sub.add_parser("address", help="the address of a keystore's key")
    address.add_argument("path", type=Path)
    address.set_defaults(handler=_cmd_address)


def _password() -> str:
    from engine.config import Secrets

    env = os.environ.get(Secrets.ENV_VARS["keystore_password"])
    if env:
        return env
    if not sys.stdin.isatty():
        raise ValueError("set ENGINE_KEYSTORE_PASSWORD (no terminal to ask on)")
    first = getpass.getpass("keystore password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def _cmd_new(args: argparse.Namespace) -> int:
    from adapters.evm.keys import SigningKeyError, new_keystore

    try:
        address = new_keystore(args.out, _password())
    except (SigningKeyError, ValueError) as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{address}  (keystore {args.out}, mode 0600; keep the password apart from it)")
    return EXIT_OK


def _cmd_address(args: argparse.Namespace) -> int:
    from adapters.evm.keys import SigningKeyError, check_keystore_mode, keystore_address

    try:
        check_keystore_mode(args.path)
        print(keystore_address(args.path))
    except SigningKeyError as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
