"""Content digests (``sha256:<hex>``): parse, compute, stream and verify.

The grammar is the OCI image spec's (descriptor.md, "Digests")::

    digest     ::= algorithm ":" encoded
    algorithm  ::= component (separator component)*   component ::= [a-z0-9]+
    separator  ::= [+._-]                             encoded   ::= [a-zA-Z0-9=_-]+

Of the registered algorithms only sha256 and sha512 are supported, each with its
encoding pinned to lowercase hex of the hash's length, as the spec requires; a
well-formed digest of any other algorithm is rejected as unsupported.

Pure: imports only the stdlib and matou.errors; no I/O besides hashlib.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from matou.errors import InvalidArgument

# algorithm -> length of its lowercase-hex encoding
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[a-f0-9]+")


class Digest(NamedTuple):
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, as ``docker images`` shows an image ID."""
        return self.hex[:12]

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not isinstance(text, str) or not _GRAMMAR.fullmatch(text):
            raise InvalidArgument(f"invalid digest '{text}'")
        algorithm, _, encoded = text.partition(":")
        length = _HEX_LENGTHS.get(algorithm)
        if length is None:
            raise InvalidArgument(f"invalid digest '{text}': unsupported algorithm '{algorithm}'")
        if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
            raise InvalidArgument(
                f"invalid digest '{text}': {algorithm} needs {length} lowercase hex characters")
        return cls(algorithm, encoded)


def _hash(algorithm: str) -> hashlib._Hash:
    if algorithm not in _HEX_LENGTHS:
        raise InvalidArgument(f"unsupported digest algorithm '{algorithm}'")
    return hashlib.new(algorithm)


def from_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    h = _hash(algorithm)
    h.update(data)
    return Digest(algorithm, h.hexdigest())


def sha256_bytes(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


class Hasher:
    """Digest of a stream fed in pieces; ``size`` counts the bytes seen so far."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        self._h = _hash(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        """The digest of everything fed so far; feeding may continue afterwards."""
        return Digest(self.algorithm, self._h.hexdigest())


def verify(data: bytes, expected: Digest) -> None:
    """Raise InvalidArgument unless ``data`` hashes to ``expected``."""
    actual = from_bytes(data, expected.algorithm)
    if actual != expected:
        raise InvalidArgument(f"digest mismatch: expected {expected}, got {actual}")
