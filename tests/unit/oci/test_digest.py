from __future__ import annotations

import pytest

from matou.errors import InvalidArgument
from matou.oci.digest import Digest, Hasher, from_bytes, sha256_bytes, verify

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = ("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")


def test_parse_round_trips() -> None:
    d = Digest.parse(f"sha256:{EMPTY_SHA256}")
    assert d == Digest("sha256", EMPTY_SHA256)
    assert str(d) == f"sha256:{EMPTY_SHA256}"
    assert d.short == "e3b0c44298fc"
    assert Digest.parse(f"sha512:{EMPTY_SHA512}").hex == EMPTY_SHA512


@pytest.mark.parametrize(("text", "reason"), [
    ("", ""),
    (EMPTY_SHA256, ""),                                   # no algorithm
    (f"sha256:{EMPTY_SHA256[:-1]}", "64 lowercase hex"),
    (f"sha256:{EMPTY_SHA256}0", "64 lowercase hex"),
    (f"sha256:{EMPTY_SHA256.upper()}", "64 lowercase hex"),
    (f"sha256:{EMPTY_SHA512}", "64 lowercase hex"),       # right hex, wrong algorithm
    (f"sha512:{EMPTY_SHA256}", "128 lowercase hex"),
    (f"SHA256:{EMPTY_SHA256}", ""),                       # algorithm grammar is lowercase
    (f"sha256:{EMPTY_SHA256}\n", ""),
    (f"sha256:{EMPTY_SHA256[:-2]}g0", "64 lowercase hex"),
    ("sha384:" + "a" * 96, "unsupported algorithm 'sha384'"),
    ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported"),
    ("sha256:", ""),
    ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported"),
])
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid digest") as e:
        Digest.parse(text)
    assert f"'{text}'" in str(e.value)
    assert reason in str(e.value)


def test_from_bytes_known_values() -> None:
    assert sha256_bytes(b"") == Digest("sha256", EMPTY_SHA256)
    assert from_bytes(b"") == Digest("sha256", EMPTY_SHA256)
    assert from_bytes(b"", "sha512") == Digest("sha512", EMPTY_SHA512)
    assert str(sha256_bytes(b"abc")) == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm 'md5'"):
        from_bytes(b"", "md5")


def test_hasher_streams() -> None:
    h = Hasher()
    assert h.size == 0 and h.digest() == sha256_bytes(b"")
    for piece in (b"a", b"", b"bc"):
        h.update(piece)
    assert h.size == 3
    assert h.digest() == sha256_bytes(b"abc")
    h512 = Hasher("sha512")
    h512.update(b"abc")
    assert h512.digest() == from_bytes(b"abc", "sha512")
    with pytest.raises(InvalidArgument):
        Hasher("sha1")


def test_verify() -> None:
    verify(b"abc", sha256_bytes(b"abc"))
    verify(b"abc", from_bytes(b"abc", "sha512"))
    good, bad = sha256_bytes(b"abc"), sha256_bytes(b"abd")
    with pytest.raises(InvalidArgument) as e:
        verify(b"abd", good)
    assert str(e.value) == f"digest mismatch: expected {good}, got {bad}"
