"""The finalized chain on disk: blocks, commits, indexes and state in one LevelDB.

What is stored is opaque bytes handed over by the ledger; this module only owns
the layout and the all-or-nothing write of each block.

Key schema (heights are u64 big-endian, so key order is height order):

    b"b" + height8      -> block bytes                 (heights base..head, and landmarks)
    b"c" + height8      -> commit certificate bytes    (heights base..head, and landmarks)
    b"k" + height8      -> b""                         (landmark: the block changed the committee)
    b"h" + block_hash32 -> height8                     (block hash index; genesis -> 0)
    b"t" + tx_hash32    -> height8 + index4            (tx location index)
    b"s" + state_key    -> state value
    b"\\x00head"         -> height8 + block_hash32 + state_root32 + sha256(those 72 bytes)
    b"\\x00base"         -> height8: the first height of the unbroken run of blocks up to the
                           head (absent: 1); raised by a snapshot that began the store or
                           by pruning, which keeps only the landmarks below it

Landmarks are what a node following the chain from genesis without executing it
needs of the pruned past: the blocks whose committee it must learn (node.verify.
chain_follow), with their commits.

A block, its commit, its index entries, every state change it causes and the new
head marker are written in one synced write batch, so after a crash at any instant
the store is at some finalized height with everything belonging to it, and nothing
above it.  Height 0 is genesis: it has state and a head marker but no block.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import threading
from typing import Iterator

import plyvel

HASH_SIZE = 32

BLOCK = b"b"
COMMIT = b"c"
LANDMARK = b"k"
BLOCK_HASH = b"h"
TX = b"t"
STATE = b"s"
TX_END = b"u"  # above every tx index key ("t" + hash)
HEAD = b"\x00head"
BASE = b"\x00base"

_HEAD_BODY = 8 + HASH_SIZE + HASH_SIZE


class StoreError(Exception):
    """The store cannot be used; the message is one line for the user."""


class StoreCorrupted(StoreError):
    """What is on disk breaks an invariant that the write path guarantees."""


@dataclasses.dataclass(frozen=True)
class Head:
    """The last finalized height, its block hash and the state root after it."""

    height: int
    block_hash: bytes
    state_root: bytes

    def encode(self) -> bytes:
        body = _h8(self.height) + self.block_hash + self.state_root
        return body + hashlib.sha256(body).digest()

    @staticmethod
    def decode(value: bytes) -> Head:
        if len(value) != _HEAD_BODY + HASH_SIZE:
            raise StoreCorrupted(f"head marker has {len(value)} bytes, "
                                 f"expected {_HEAD_BODY + HASH_SIZE}")
        body, checksum = value[:_HEAD_BODY], value[_HEAD_BODY:]
        if hashlib.sha256(body).digest() != checksum:
            raise StoreCorrupted("head marker checksum does not match")
        return Head(int.from_bytes(body[:8], "big"), body[8:8 + HASH_SIZE],
                    body[8 + HASH_SIZE:])


def _h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes")


class ChainStore:
    """The node's LevelDB: one writer, any number of readers."""

    def __init__(self, db: plyvel.DB, path: pathlib.Path):
        self._db = db
        self.path = path
        # commit_block checks the head then writes; the lock keeps that pair atomic.
        self._write_lock = threading.Lock()

    @classmethod
    def open(cls, path: pathlib.Path) -> ChainStore:
        """Open (or create) the store at path and check it with check_consistency."""
        store = cls(_open_leveldb(path), path)
        try:
            store.check_consistency()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._db.close()

    def reopen(self) -> None:
        """Close the store and open it again.  LevelDB starts a new info LOG (keeping one
        old) and writes a fresh MANIFEST only when it opens a store; in between, both grow
        with every compaction, without bound in a node that runs for months.  The caller
        makes sure no other thread is using the store meanwhile."""
        with self._write_lock:
            self._db.close()
            self._db = _open_leveldb(self.path)

    def __enter__(self) -> ChainStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self) -> Head | None:
        value = self._db.get(HEAD)
        return None if value is None else Head.decode(value)

    def block(self, height: int) -> bytes | None:
        return self._db.get(BLOCK + _h8(height))

    def commit(self, height: int) -> bytes | None:
        return self._db.get(COMMIT + _h8(height))

    def height_of(self, block_hash: bytes) -> int | None:
        value = self._db.get(BLOCK_HASH + block_hash)
        return None if value is None else int.from_bytes(value, "big")

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index in block) of a finalized transaction."""
        value = self._db.get(TX + tx_hash)
        if value is None:
            return None
        return int.from_bytes(value[:8], "big"), int.from_bytes(value[8:], "big")

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every state entry in key order, without the key prefix."""
        for key, value in self._db.iterator(prefix=STATE):
            yield key[len(STATE):], value

    def store_genesis_state(self, state_writes: dict[bytes, bytes], state_root: bytes,
                            genesis_hash: bytes) -> None:
        """Write the genesis state and a head marker at height 0 into an empty store."""
        _check_hash("state_root", state_root)
        _check_hash("genesis_hash", genesis_hash)
        self._begin(state_writes, {BLOCK_HASH + genesis_hash: _h8(0)}, Head(0, genesis_hash, state_root),
                    "genesis can only be written once")

    def base(self) -> int:
        """The first height of the unbroken run of stored blocks up to the head: 1, the
        height of the snapshot the store was begun from, or where pruning left it."""
        value = self._db.get(BASE)
        return 1 if value is None else int.from_bytes(value, "big")

    def landmarks(self) -> list[int]:
        """The heights of the blocks that changed the committee, in order (kept when
        older blocks are pruned)."""
        with self._db.iterator(prefix=LANDMARK, include_value=False) as it:
            return [int.from_bytes(key[len(LANDMARK):], "big") for key in it]

    def install_snapshot(self, state: dict[bytes, bytes], state_root: bytes, height: int, block_hash: bytes,
                         block: bytes, commit: bytes, genesis_hash: bytes,
                         landmarks: dict[int, tuple[bytes, bytes]], is_landmark: bool) -> None:
        """Begin an empty store at height from a verified snapshot: its state, the block
        there and its commit (what the next block builds on), and the verified landmark
        blocks below it (height -> block, commit), in one synced batch."""
        _check_hash("state_root", state_root)
        _check_hash("block_hash", block_hash)
        _check_hash("genesis_hash", genesis_hash)
        if height < 1:
            raise ValueError("a snapshot starts above the genesis")
        if any(not 1 <= h < height for h in landmarks):
            raise ValueError(f"a landmark below a snapshot at height {height} is out of 1..{height - 1}")
        puts = {BLOCK + _h8(height): block, COMMIT + _h8(height): commit,
                BLOCK_HASH + block_hash: _h8(height), BLOCK_HASH + genesis_hash: _h8(0), BASE: _h8(height)}
        for landmark, (landmark_block, landmark_commit) in landmarks.items():
            puts.update({BLOCK + _h8(landmark): landmark_block, COMMIT + _h8(landmark): landmark_commit,
                         LANDMARK + _h8(landmark): b""})
        if is_landmark:
            puts[LANDMARK + _h8(height)] = b""
        self._begin(state, puts, Head(height, block_hash, state_root), "a snapshot can only begin a new store")

    def prune_below(self, new_base: int, index_keys: dict[int, tuple[bytes, list[bytes]]]) -> int:
        """Delete the blocks below new_base, with their commits, except the landmarks, and
        raise the base to it, in one synced batch; index_keys gives each deleted height's
        block hash and tx hashes, whose index entries go too.  Returns how many blocks went."""
        with self._write_lock:
            head, base = self.head(), self.base()
            if head is None or not base <= new_base <= head.height:
                raise ValueError(f"cannot prune below {new_base}: the blocks kept are {base}.."
                                 f"{None if head is None else head.height}")
            landmarks = set(self.landmarks())
            doomed = [h for h in range(base, new_base) if h not in landmarks]
            if sorted(index_keys) != doomed:
                raise ValueError(f"pruning below {new_base} needs the index keys of heights {doomed[:3]}..., "
                                 f"got {sorted(index_keys)[:3]}...")
            with self._db.write_batch(sync=True, transaction=True) as batch:
                for height in doomed:
                    block_hash, tx_hashes = index_keys[height]
                    for key in (BLOCK + _h8(height), COMMIT + _h8(height), BLOCK_HASH + block_hash,
                                *(TX + tx_hash for tx_hash in tx_hashes)):
                        batch.delete(key)
                batch.put(BASE, _h8(new_base))
            return len(doomed)

    def compact_pruned(self) -> None:
        """Have LevelDB drop what pruning deleted.  Its tables keep deleted entries (and
        every older version of a key) until a compaction reaches them, and a node's few
        writes a second would take hours to set one off: meanwhile the disk grows by
        every block ever written.  Compacting the block, commit and index ranges merges
        the tables holding them, so the store stays the size of what it keeps.  Slow
        (it writes tables): run it off the event loop."""
        for start, stop in ((BLOCK, LANDMARK), (TX, TX_END)):  # blocks, commits, hashes; txs
            self._db.compact_range(start=start, stop=stop)

    def _begin(self, state: dict[bytes, bytes], puts: dict[bytes, bytes], head: Head, why: str) -> None:
        """Write a first state, other keys and the head into an empty store, in one batch."""
        with self._write_lock:
            with self._db.iterator(include_value=False) as it:
                if next(it, None) is not None:
                    raise ValueError(f"store is not empty; {why}")
            with self._db.write_batch(sync=True, transaction=True) as batch:
                for key, value in state.items():
                    batch.put(STATE + key, value)
                for key, value in puts.items():
                    batch.put(key, value)
                batch.put(HEAD, head.encode())

    def commit_block(self, height: int, block_hash: bytes, block: bytes, commit: bytes,
                     tx_hashes: list[bytes], state_writes: dict[bytes, bytes | None],
                     state_root: bytes, is_landmark: bool = False) -> None:
        """Finalize one block: everything it brings and the new head in one synced batch.

        state_writes maps a state key to its new value, or to None to delete it;
        is_landmark says the block changed the committee.
        """
        _check_hash("block_hash", block_hash)
        _check_hash("state_root", state_root)
        for tx_hash in tx_hashes:
            _check_hash("tx hash", tx_hash)
        if len(set(tx_hashes)) != len(tx_hashes):
            raise ValueError("block lists the same tx hash twice")
        with self._write_lock:
            head = self.head()
            expected = 1 if head is None else head.height + 1
            if height != expected:
                raise ValueError(f"cannot commit height {height}: next height is {expected}")
            if self.height_of(block_hash) is not None:
                raise ValueError(f"block hash {block_hash.hex()} is already stored")
            # Overwriting a tx index entry would silently lose where the first copy is.
            for tx_hash in tx_hashes:
                if self.tx_location(tx_hash) is not None:
                    raise ValueError(f"tx hash {tx_hash.hex()} is already stored")
            with self._db.write_batch(sync=True, transaction=True) as batch:
                batch.put(BLOCK + _h8(height), block)
                batch.put(COMMIT + _h8(height), commit)
                batch.put(BLOCK_HASH + block_hash, _h8(height))
                if is_landmark:
                    batch.put(LANDMARK + _h8(height), b"")
                for index, tx_hash in enumerate(tx_hashes):
                    batch.put(TX + tx_hash, _h8(height) + index.to_bytes(4, "big"))
                for key, value in state_writes.items():
                    if value is None:
                        batch.delete(STATE + key)
                    else:
                        batch.put(STATE + key, value)
                batch.put(HEAD, Head(height, block_hash, state_root).encode())

    def check_consistency(self) -> Head | None:
        """Check the invariants the write path guarantees; return the head.

        Raises StoreCorrupted naming the first broken invariant.  Walks every
        block and commit key once, so it is O(height).
        """
        head = self.head()
        if head is None:
            with self._db.iterator(include_value=False) as it:
                first = next(it, None)
            if first is not None:
                raise StoreCorrupted(f"store has data (first key {first[:9].hex()}) "
                                     f"but no head marker")
            return None
        base = self.base()
        if not 1 <= base <= max(head.height, 1):
            raise StoreCorrupted(f"the first stored height {base} is not within 1..{head.height}")
        landmarks = set(self.landmarks())
        for prefix, kind in ((BLOCK, "block"), (COMMIT, "commit")):
            _check_heights(self._db, prefix, kind, base, head.height, landmarks)
        if self.height_of(head.block_hash) != head.height:
            raise StoreCorrupted(f"hash index does not map head block "
                                 f"{head.block_hash.hex()} to height {head.height}")
        return head


def _check_heights(db: plyvel.DB, prefix: bytes, kind: str, base: int, head_height: int,
                   landmarks: set[int]) -> None:
    """The keys under prefix must be exactly the landmarks below base and heights base..head_height."""
    expected = base
    below = sorted(h for h in landmarks if h < base)
    with db.iterator(prefix=prefix, include_value=False) as it:
        for key in it:
            if len(key) != len(prefix) + 8:
                raise StoreCorrupted(f"malformed {kind} key {key.hex()}")
            height = int.from_bytes(key[len(prefix):], "big")
            if height > head_height:
                raise StoreCorrupted(f"{kind} at height {height} above head "
                                     f"{head_height} (partial write)")
            if height == 0:
                raise StoreCorrupted(f"{kind} at height 0 (genesis has none)")
            if height < base:
                if not below or below.pop(0) != height:
                    raise StoreCorrupted(f"{kind} at height {height}, below the first kept height {base}, "
                                         f"is no landmark")
                continue
            if height != expected:
                raise StoreCorrupted(f"{kind} at height {expected} is missing "
                                     f"(head is {head_height})")
            expected += 1
    if below:
        raise StoreCorrupted(f"the landmark {kind} at height {below[0]} is missing")
    if expected != head_height + 1:
        raise StoreCorrupted(f"{kind} at height {expected} is missing "
                             f"(head is {head_height})")


def _open_leveldb(path: pathlib.Path) -> plyvel.DB:
    try:
        return plyvel.DB(str(path), create_if_missing=True)
    except plyvel.IOError as e:
        message = _plyvel_message(e)
        # LevelDB reports a held LOCK file as "IO error: lock <path>/LOCK: ...".
        if message.startswith("IO error: lock "):
            raise StoreError(f"another uponode process is using {path}") from None
        raise StoreError(f"cannot open store at {path}: {message}") from None
    except plyvel.CorruptionError as e:
        raise StoreCorrupted(f"store at {path} is corrupted: {_plyvel_message(e)}") from None
    except plyvel.Error as e:
        raise StoreError(f"cannot open store at {path}: {_plyvel_message(e)}") from None


def _plyvel_message(error: Exception) -> str:
    message = error.args[0] if error.args else ""
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)
