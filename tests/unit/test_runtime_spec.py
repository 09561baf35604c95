from __future__ import annotations

import copy
from typing import Any

import pytest

from matou.errors import InvalidArgument
from matou.oci.default_spec import default_spec
from matou.oci.runtime_spec import load_spec_bytes, parse_process, parse_spec


def _spec(**over: Any) -> dict[str, Any]:
    s = copy.deepcopy(default_spec())
    s.update(over)
    return s


def test_default_spec_parses() -> None:
    spec = parse_spec(_spec())
    assert spec.process is not None and spec.process.args == ("sh",)
    assert spec.root is not None and spec.root.readonly
    assert {n.type for n in spec.namespaces} == {"pid", "network", "ipc", "uts", "mount",
                                                 "cgroup"}
    assert spec.process.capabilities is not None
    assert "CAP_KILL" in spec.process.capabilities.bounding
    assert spec.masked_paths and spec.readonly_paths
    assert spec.namespace("pid") is not None and spec.namespace("user") is None


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(ociVersion=""), "ociVersion: missing"),
    (lambda s: s.update(ociVersion="2.0.0"), "unsupported version"),
    (lambda s: s["process"].update(cwd="relative"), "absolute"),
    (lambda s: s["process"]["user"].update(uid="0"), "process.user.uid: expected integer"),
    (lambda s: s["process"].update(terminal="yes"), "process.terminal: expected boolean"),
    (lambda s: s["process"].update(args="sh"), "process.args: expected array"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "duplicate namespace"),
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace"),
    (lambda s: s["mounts"].append({"type": "tmpfs"}), "destination: missing"),
    (lambda s: s.update(hooks={"prestart": [{"path": "rel"}]}), "must be absolute"),
    (lambda s: s["process"]["rlimits"].append(dict(s["process"]["rlimits"][0])),
     "duplicate rlimit"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "z"}]),
     "unknown device type"),
])
def test_bad_fields_are_named(mutate: Any, message: str) -> None:
    s = _spec()
    mutate(s)
    with pytest.raises(InvalidArgument, match=message):
        parse_spec(s)


def test_hostname_needs_uts_namespace() -> None:
    s = _spec()
    s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "uts"]
    with pytest.raises(InvalidArgument, match="uts"):
        parse_spec(s)


def test_malformed_json() -> None:
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        load_spec_bytes(b"{")
    with pytest.raises(InvalidArgument, match="expected object"):
        load_spec_bytes(b"[]")


def test_parse_process_alone() -> None:
    p = parse_process({"args": ["ls"], "cwd": "/", "user": {"uid": 5, "gid": 6,
                                                            "additionalGids": [7]}})
    assert p.user.uid == 5 and p.user.additional_gids == (7,)
    with pytest.raises(InvalidArgument, match="additionalGids"):
        parse_process({"args": ["ls"], "cwd": "/", "user": {"additionalGids": ["x"]}})
