"""Normalisation cases from github.com/distribution/reference's normalize_test.go."""

from __future__ import annotations

import pytest

from matou.errors import InvalidArgument
from matou.oci.digest import Digest
from matou.oci.reference import Reference, is_image_id_like, parse

HEX = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
DIG = f"sha256:{HEX}"
ID64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
SONG = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"


@pytest.mark.parametrize(("text", "canonical", "familiar"), [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36.1", "docker.io/library/busybox:1.36.1", "busybox:1.36.1"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/debian", "docker.io/library/debian:latest", "debian:latest"),
    ("index.docker.io/debian", "docker.io/library/debian:latest", "debian:latest"),
    ("index.docker.io/fooo/bar", "docker.io/fooo/bar:latest", "fooo/bar:latest"),
    ("user/img", "docker.io/user/img:latest", "user/img:latest"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("store/foo/bar:1", "docker.io/store/foo/bar:1", "store/foo/bar:1"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest",
     "ubuntu-12.04-base:latest"),
    ("localhost/fooo", "localhost/fooo:latest", "localhost/fooo:latest"),
    ("localhost/fooo/bar", "localhost/fooo/bar:latest", "localhost/fooo/bar:latest"),
    ("LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar:latest", "LOCALDOMAIN/fooo/bar:latest"),
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase:latest",
     "127.0.0.1:8000/private/moonbase:latest"),
    ("example.com:8000/privatebasee:v1", "example.com:8000/privatebasee:v1",
     "example.com:8000/privatebasee:v1"),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000/docker/docker:latest",
     "[fc00::1]:5000/docker/docker:latest"),
    # A lone component is always a Docker Hub name, even one that looks like a host.
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
    ("192.168.0.1", "docker.io/library/192.168.0.1:latest", "192.168.0.1:latest"),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
    ("docker---rules/docker", "docker.io/docker---rules/docker:latest",
     "docker---rules/docker:latest"),
    ("dock__er/d", "docker.io/dock__er/d:latest", "dock__er/d:latest"),
    (SONG, f"docker.io/library/{SONG}:latest", f"{SONG}:latest"),
    # With a domain a 64-hex name is unambiguous.
    (f"docker.io/{ID64}", f"docker.io/library/{ID64}:latest", f"{ID64}:latest"),
    # No default tag next to a digest; a tag given with one is kept.
    (f"busybox@{DIG}", f"docker.io/library/busybox@{DIG}", f"busybox@{DIG}"),
    (f"localhost:5000/a/b@{DIG}", f"localhost:5000/a/b@{DIG}", f"localhost:5000/a/b@{DIG}"),
    (f"localhost:5000/a/b:tag@{DIG}", f"localhost:5000/a/b:tag@{DIG}",
     f"localhost:5000/a/b:tag@{DIG}"),
    ("busybox:Tag_1.x-Y", "docker.io/library/busybox:Tag_1.x-Y", "busybox:Tag_1.x-Y"),
])
def test_normalise(text: str, canonical: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar
    # Both spellings parse back to the same reference.
    assert parse(canonical) == ref
    assert parse(familiar) == ref


@pytest.mark.parametrize(("text", "message"), [
    ("", "at least one component"),
    (ID64, f"invalid repository name ({ID64}), cannot specify 64-byte hexadecimal strings"),
    ("docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("Busybox", "repository name (library/Busybox) must be lowercase"),
    ("docker.io/docker/Docker:latest", "repository name (docker/Docker) must be lowercase"),
    ("https://github.com/docker/docker", "'https://github.com/docker/docker'"),
    ("-docker", "'-docker'"),
    ("-docker/docker", "'-docker/docker'"),
    ("-docker.io/docker/docker", "'-docker.io/docker/docker'"),
    ("docker-/docker", "'docker-/docker'"),
    ("docker///docker", "'docker///docker'"),
    ("____/____", "'____/____'"),
    ("_docker/_docker", "'_docker/_docker'"),
    ("dock..er/docker", "'dock..er/docker'"),
    ("dock_.er/docker", "'dock_.er/docker'"),
    ("docker/", "'docker/'"),
    ("[fc00::1]:5000", "'[fc00::1]:5000'"),
    ("fc00::1:5000/debian", "'fc00::1:5000/debian'"),
    ("[fe80::1%eth0]:5000/debian", "'[fe80::1%eth0]:5000/debian'"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "'[2001:db8:3:4::192.0.2.33]:5000/debian'"),
    ("busybox:-tag", "'busybox:-tag'"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:tag:other", "'busybox:tag:other'"),
    ("busybox:ta\u00e9g", "invalid reference format"),  # \w is ASCII only, as in Go
    ("busybox@sha256:abc", "'busybox@sha256:abc'"),
    (f"busybox@sha256:{HEX.upper()}", "64 lowercase hex"),
    (f"busybox@md5:{HEX[:32]}", "unsupported algorithm 'md5'"),
    ("a" * 200 + "/" + "b" * 56, "must not be more than 255 characters"),
])
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse(text)
    assert message in str(e.value)


def test_path_length_limit_counts_the_path_only() -> None:
    path = "a" * 100 + "/" + "b" * 154  # 255 characters
    assert parse(f"registry.example.com:5000/{path}").path == path
    with pytest.raises(InvalidArgument):
        parse(f"{path}b")


def test_fields_and_names() -> None:
    ref = parse(f"localhost:5000/a/b:tag@{DIG}")
    assert ref == Reference("localhost:5000", "a/b", "tag", Digest("sha256", HEX))
    assert ref.name == ref.familiar_name == "localhost:5000/a/b"
    hub = parse("busybox")
    assert (hub.domain, hub.path, hub.tag, hub.digest) == ("docker.io", "library/busybox",
                                                            "latest", None)
    assert hub.name == "docker.io/library/busybox"
    assert hub.familiar_name == "busybox"
    assert parse("user/x").familiar_name == "user/x"


def test_default_tag() -> None:
    assert str(parse("busybox", default_tag=None)) == "docker.io/library/busybox"
    assert parse("busybox", default_tag=None).familiar() == "busybox"
    assert parse("busybox", default_tag="edge").tag == "edge"
    assert parse("busybox:1", default_tag=None).tag == "1"


def test_with_tag_and_digest() -> None:
    ref = parse("busybox", default_tag=None)
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    both = ref.with_tag("1.36").with_digest(DIG)
    assert both.familiar() == f"busybox:1.36@{DIG}"
    assert ref.with_digest(Digest("sha256", HEX)) == ref.with_digest(DIG)
    assert ref.with_digest(DIG).with_tag("x").tag == "x"
    with pytest.raises(InvalidArgument, match=r"invalid tag format '\.bad'"):
        ref.with_tag(".bad")
    with pytest.raises(InvalidArgument, match="invalid digest"):
        ref.with_digest("sha256:nope")


@pytest.mark.parametrize(("text", "like"), [
    (HEX, True),
    (DIG, True),
    (HEX[:12], True),
    (HEX[:40], True),
    (HEX[:11], False),
    (HEX.upper(), False),
    (f"sha256:{HEX[:12]}", False),
    (HEX + "0", False),
    ("busybox", False),
    ("", False),
])
def test_is_image_id_like(text: str, like: bool) -> None:
    assert is_image_id_like(text) is like
