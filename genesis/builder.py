"""Build a devnet genesis with fresh keys: python -m genesis.builder --validators N --out DIR.

The result is the base genesis (the devnet's by default) with its validators and
accounts replaced: N new validators of equal power, each also a funded account
bonded at the minimum miner bond (per unit it mines), plus any number of extra funded accounts.  The
corpus is copied beside the new genesis at the same relative path, so homes can
copy the genesis file byte for byte.  Every key is written under DIR/keys/ in the
node key file format; these keys control the devnet's funds, so DIR is for tests
and local devnets only.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Sequence

from node.types.crypto import SigningKey
from node.types.errors import CommandError
from node.types.genesis import DEFAULT_GENESIS, MAX_ACCOUNTS, MAX_VALIDATORS, GenesisError, load_genesis
from node.types.transactions import MAX_MINER_UNITS
from node.storage.home import GENESIS_FILE, copy_corpus, write_key_file, write_new_file

VALIDATOR_POWER = 10
FUNDED_BALANCE = 10**12
KEYS_DIR = "keys"


class BuildError(CommandError):
    """Arguments or an output directory the builder cannot use."""


def _account(key: SigningKey, bond: int) -> dict:
    return {"address": key.public_key.hex(), "balance": FUNDED_BALANCE, "bond": bond}


def build_devnet(n_validators: int, out_dir: pathlib.Path, funded_accounts: int = 0,
                 base: pathlib.Path = DEFAULT_GENESIS, units: Sequence[int] | None = None) -> pathlib.Path:
    """Write out_dir/genesis.json, its corpus and out_dir/keys/; return the genesis path.
    Validator i is bonded for units[i] miner units (one each by default)."""
    if not 1 <= n_validators <= MAX_VALIDATORS:
        raise BuildError(f"the number of validators must be 1..{MAX_VALIDATORS}, "
                         f"got {n_validators}")
    if not 0 <= funded_accounts <= MAX_ACCOUNTS - n_validators:
        raise BuildError(f"the number of extra accounts must be 0..{MAX_ACCOUNTS - n_validators} "
                         f"with {n_validators} validators, got {funded_accounts}")
    base_genesis = load_genesis(base)
    raw = json.loads(pathlib.Path(base).read_bytes())
    out_dir = pathlib.Path(out_dir)
    genesis_path, keys_dir = out_dir / GENESIS_FILE, out_dir / KEYS_DIR
    if genesis_path.exists() or keys_dir.exists():
        raise BuildError(f"{out_dir}: already holds a genesis or keys; choose an empty directory")

    validators = [SigningKey.generate() for _ in range(n_validators)]
    accounts = [SigningKey.generate() for _ in range(funded_accounts)]
    units = [1] * n_validators if units is None else list(units)
    if len(units) != n_validators or not all(1 <= u <= MAX_MINER_UNITS for u in units):
        raise BuildError(f"units: one count 1..{MAX_MINER_UNITS} per validator, got {units}")
    bond = base_genesis.economics.min_miner_bond
    raw["validators"] = [{"pub_key": k.public_key.hex(), "power": VALIDATOR_POWER}
                         for k in validators]
    raw["accounts"] = ([_account(k, n * bond) for k, n in zip(validators, units)]
                       + [_account(k, 0) for k in accounts])
    # the genesis validators are the first committee, so it needs a seat for each
    consensus = raw["consensus"]
    consensus["committee_size"] = max(consensus["committee_size"], n_validators)

    keys_dir.mkdir(parents=True)
    for i, key in enumerate(validators):
        write_key_file(keys_dir / f"validator-{i}.json", key)
    for i, key in enumerate(accounts):
        write_key_file(keys_dir / f"account-{i}.json", key)
    copy_corpus(base_genesis, out_dir)
    write_new_file(genesis_path, (json.dumps(raw, indent=2) + "\n").encode())
    load_genesis(genesis_path)  # what was written must be a genesis every node accepts
    return genesis_path


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage dump), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m genesis.builder",
                     description="Write a devnet genesis with fresh validator and account keys.")
    parser.add_argument("--validators", type=_count, required=True, metavar="N",
                        help="number of validators (each also a funded, bonded account)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="directory for genesis.json, its corpus and keys/")
    parser.add_argument("--accounts", type=_count, default=0, metavar="M",
                        help="extra funded accounts (default 0)")
    args = parser.parse_args(argv)
    try:
        path = build_devnet(args.validators, pathlib.Path(args.out), args.accounts)
    except (CommandError, GenesisError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{parser.prog}: error: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
