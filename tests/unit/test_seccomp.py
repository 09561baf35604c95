from __future__ import annotations

import json
from pathlib import Path

import pytest

from matou.errors import InvalidArgument
from matou.linux.seccomp import Filter
from matou.oci.default_spec import default_spec
from matou.oci.runtime_spec import parse_spec

REFERENCE = Path(__file__).resolve().parents[3] / "shared/reference/seccomp-default.json"


def _filter(seccomp: dict[str, object]) -> Filter:
    spec = default_spec()
    spec["linux"]["seccomp"] = seccomp
    parsed = parse_spec(spec).seccomp
    assert parsed is not None
    return Filter(parsed)


def test_builds_with_conditions() -> None:
    f = _filter({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                 "syscalls": [
                     {"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]})
    f.release()


def test_unknown_action_and_operator() -> None:
    with pytest.raises(InvalidArgument, match="unknown seccomp action"):
        _filter({"defaultAction": "SCMP_ACT_MAYBE"})
    with pytest.raises(InvalidArgument, match="operator"):
        _filter({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]})


@pytest.mark.skipif(not REFERENCE.exists(), reason="no reference profile here")
def test_docker_default_profile_syscalls_compile() -> None:
    profile = json.loads(REFERENCE.read_text())
    calls = [{k: v for k, v in s.items() if k in ("names", "action", "errnoRet", "args")}
             for s in profile["syscalls"]]
    _filter({"defaultAction": profile["defaultAction"],
             "defaultErrnoRet": profile.get("defaultErrnoRet"), "syscalls": calls}).release()


def test_program_is_cached_by_spec(tmp_path: Path) -> None:
    from matou.linux.seccomp import program

    spec = parse_spec({**default_spec(), "linux": {**default_spec()["linux"], "seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}}}).seccomp
    assert spec is not None
    cache = tmp_path / "cache"
    first = program(spec, str(cache))
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].read_bytes().endswith(first.bpf)
    assert len(first.bpf) % 8 == 0
    assert program(spec, str(cache)) == first  # read back, not compiled again
    files[0].write_bytes(b"torn")  # a damaged entry is compiled afresh
    assert program(spec, str(cache)) == first
    other = parse_spec({**default_spec(), "linux": {**default_spec()["linux"], "seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}}}).seccomp
    assert other is not None
    assert program(other, str(cache)).flags == 2 and len(list(cache.iterdir())) == 2
