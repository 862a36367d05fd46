"""The one canonical binary encoding of everything hashed or signed.

A record is a dataclass with a SCHEMA: an ordered tuple of (field name, codec).
Integers are fixed-width big-endian, byte strings and lists carry a u32 length
prefix with a cap, nested records are inlined, and a tagged union starts with a
one-byte tag.  Decoding is strict: every length is checked against its cap before
anything is read, the input must be consumed exactly, and since every value has
exactly one encoding, decode(b).encode() == b for every b that decodes.
Any malformed input raises DecodeError and nothing else.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Any, ClassVar, Generic, Sequence, TypeVar

T = TypeVar("T")


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected type."""


class Reader:
    """A cursor over bytes being decoded."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"truncated: needs {n} bytes at offset {self.pos}, "
                              f"{len(self.data) - self.pos} left")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} trailing bytes")


class Codec(Generic[T]):
    def write(self, value: T, out: bytearray) -> None:
        raise NotImplementedError

    def read(self, reader: Reader) -> T:
        raise NotImplementedError

    def check(self, value: Any, name: str) -> None:
        """Raise ValueError if value cannot be encoded (wrong type, out of range, too long)."""
        raise NotImplementedError


class UInt(Codec[int]):
    def __init__(self, bits: int):
        self.bits = bits
        self.format = {8: ">B", 16: ">H", 32: ">I", 64: ">Q"}[bits]
        self.size = bits // 8

    def check(self, value: Any, name: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer")
        if not 0 <= value < 1 << self.bits:
            raise ValueError(f"{name}: {value} does not fit in u{self.bits}")

    def write(self, value: int, out: bytearray) -> None:
        out += struct.pack(self.format, value)

    def read(self, reader: Reader) -> int:
        return struct.unpack(self.format, reader.take(self.size))[0]


class FixedBytes(Codec[bytes]):
    def __init__(self, size: int):
        self.size = size

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, bytes) or len(value) != self.size:
            raise ValueError(f"{name}: expected exactly {self.size} bytes")

    def write(self, value: bytes, out: bytearray) -> None:
        out += value

    def read(self, reader: Reader) -> bytes:
        return reader.take(self.size)


class VarBytes(Codec[bytes]):
    def __init__(self, max_len: int):
        self.max_len = max_len

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, bytes):
            raise ValueError(f"{name}: expected bytes")
        if len(value) > self.max_len:
            raise ValueError(f"{name}: {len(value)} bytes exceeds the cap of {self.max_len}")

    def write(self, value: bytes, out: bytearray) -> None:
        out += struct.pack(">I", len(value)) + value

    def read(self, reader: Reader) -> bytes:
        (n,) = struct.unpack(">I", reader.take(4))
        if n > self.max_len:
            raise DecodeError(f"length {n} exceeds the cap of {self.max_len}")
        return reader.take(n)


class Text(Codec[str]):
    """UTF-8 text with a byte-length cap."""

    def __init__(self, max_len: int):
        self.raw = VarBytes(max_len)

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected text")
        self.raw.check(value.encode(), name)

    def write(self, value: str, out: bytearray) -> None:
        self.raw.write(value.encode(), out)

    def read(self, reader: Reader) -> str:
        try:
            return self.raw.read(reader).decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8: {exc.reason}") from None


class ListOf(Codec[tuple]):
    """A sequence with a count cap; decoded (and stored in records) as a tuple."""

    def __init__(self, item: Codec, max_items: int):
        self.item = item
        self.max_items = max_items

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name}: expected a list")
        if len(value) > self.max_items:
            raise ValueError(f"{name}: {len(value)} items exceeds the cap of {self.max_items}")
        for i, item in enumerate(value):
            self.item.check(item, f"{name}[{i}]")

    def write(self, value: Sequence, out: bytearray) -> None:
        out += struct.pack(">I", len(value))
        for item in value:
            self.item.write(item, out)

    def read(self, reader: Reader) -> tuple:
        (n,) = struct.unpack(">I", reader.take(4))
        if n > self.max_items:
            raise DecodeError(f"count {n} exceeds the cap of {self.max_items}")
        return tuple(self.item.read(reader) for _ in range(n))


class Nested(Codec):
    """A record inside another record."""

    def __init__(self, cls: type["Record"]):
        self.cls = cls

    def check(self, value: Any, name: str) -> None:
        if not isinstance(value, self.cls):
            raise ValueError(f"{name}: expected {self.cls.__name__}")
        value.validate(name)

    def write(self, value: "Record", out: bytearray) -> None:
        value.write(out)

    def read(self, reader: Reader) -> "Record":
        return self.cls.read(reader)


class Tagged(Codec):
    """One of several record types, introduced by its one-byte tag."""

    def __init__(self, variants: dict[int, type["Record"]]):
        self.by_tag = dict(variants)
        self.by_cls = {cls: tag for tag, cls in variants.items()}

    def check(self, value: Any, name: str) -> None:
        if type(value) not in self.by_cls:
            raise ValueError(f"{name}: {type(value).__name__} is not one of the variants")
        value.validate(name)

    def write(self, value: "Record", out: bytearray) -> None:
        out.append(self.by_cls[type(value)])
        value.write(out)

    def read(self, reader: Reader) -> "Record":
        tag = reader.take(1)[0]
        cls = self.by_tag.get(tag)
        if cls is None:
            raise DecodeError(f"unknown tag {tag}")
        return cls.read(reader)

    def encode(self, value: "Record") -> bytes:
        self.check(value, type(value).__name__)
        out = bytearray()
        self.write(value, out)
        return bytes(out)

    def decode(self, data: bytes) -> "Record":
        return _decode_exactly(self.read, data)


def _decode_exactly(read, data: bytes):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    reader = Reader(bytes(data))
    try:
        value = read(reader)
    except RecursionError:
        raise DecodeError("nesting too deep") from None
    reader.finish()
    return value


U8, U16, U32, U64 = UInt(8), UInt(16), UInt(32), UInt(64)
HASH = FixedBytes(32)
PUBKEY = FixedBytes(32)
SIGNATURE = FixedBytes(64)


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every encoded type: subclasses are frozen dataclasses with a SCHEMA
    listing every field, in encoding order, with its codec.

    A record's encoding is computed once and kept (records are immutable); a
    decoded record keeps the bytes it came from, which are its canonical encoding.
    """

    SCHEMA: ClassVar[tuple[tuple[str, Codec], ...]] = ()

    def validate(self, name: str = "") -> None:
        if "_encoded" in self.__dict__:
            return  # encoded or decoded before: known valid
        prefix = f"{name}." if name else ""
        for field, codec in self.SCHEMA:
            codec.check(getattr(self, field), prefix + field)

    def write(self, out: bytearray) -> None:
        out += self.encode()

    @classmethod
    def read(cls, reader: Reader):
        start = reader.pos
        value = cls(**{field: codec.read(reader) for field, codec in cls.SCHEMA})
        object.__setattr__(value, "_encoded", bytes(reader.data[start:reader.pos]))
        return value

    def encode(self) -> bytes:
        """The canonical bytes; raises ValueError if a field is out of its type's range."""
        encoded = self.__dict__.get("_encoded")
        if encoded is None:
            self.validate(type(self).__name__)
            out = bytearray()
            for field, codec in self.SCHEMA:
                codec.write(getattr(self, field), out)
            encoded = bytes(out)
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @classmethod
    def decode(cls, data: bytes):
        """Strictly decode data, which must hold exactly one value; DecodeError otherwise."""
        return _decode_exactly(cls.read, data)
