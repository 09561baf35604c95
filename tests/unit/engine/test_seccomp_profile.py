from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from matou.engine import seccomp_profile as sp
from matou.errors import InvalidArgument, Unsupported

# Docker's 14 default capabilities
DOCKER_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
NEW_KERNEL = (6, 1)
_REPO = Path(__file__).resolve().parents[3]
REFERENCES = (Path("/work/shared/reference/seccomp-default.json"),
              _REPO.parent / "shared/reference/seccomp-default.json")
REFERENCE = next((p for p in REFERENCES if p.exists()), None)

Entry = tuple[str, str, str, int | None]


def _entries(res: dict[str, Any]) -> set[Entry]:
    """(syscall, action, args, errnoRet) of every name of every rule."""
    return {(n, s["action"], json.dumps(s.get("args", []), sort_keys=True), s.get("errnoRet"))
            for s in res["syscalls"] for n in s["names"]}


def _rules(res: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in res["syscalls"] if name in s["names"]]


def _allowed_plainly(res: dict[str, Any], name: str) -> bool:
    return any(s["action"] == sp.ALLOW and not s.get("args") for s in _rules(res, name))


def _default(*extra: str, arch: str = "x86_64",
             kernel: tuple[int, int] = NEW_KERNEL) -> dict[str, Any]:
    return sp.resolve(sp.DEFAULT, [*DOCKER_CAPS, *extra], arch, kernel)


def test_default_caps_on_x86_64() -> None:
    res = _default()
    assert res["defaultAction"] == "SCMP_ACT_ERRNO" and res["defaultErrnoRet"] == 1
    assert res["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for name in ("read", "write", "openat", "execve", "futex", "ptrace", "chroot",
                 "arch_prctl", "modify_ldt", "socketpair", "setuid"):
        assert _allowed_plainly(res, name), name
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "reboot",
                 "init_module", "kcmp", "open_by_handle_at", "settimeofday", "syslog",
                 "keyctl", "add_key", "request_key", "io_uring_setup", "userfaultfd",
                 "kexec_load", "pivot_root", "riscv_flush_icache", "cacheflush"):
        assert not _rules(res, name), name


def test_clone_conditioned_and_clone3_enosys_without_sys_admin() -> None:
    res = _default()
    (clone,) = _rules(res, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = _rules(res, "clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    assert "args" not in clone3


def test_sys_admin_opens_its_group() -> None:
    res = _default("CAP_SYS_ADMIN")
    for name in ("mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf",
                 "sethostname", "fsopen", "open_tree", "quotactl", "syslog"):
        assert _allowed_plainly(res, name), name
    # the conditional clone and the clone3 ENOSYS rule are gone
    assert all(not s.get("args") for s in _rules(res, "clone"))
    assert all(s["action"] == sp.ALLOW for s in _rules(res, "clone3"))


@pytest.mark.parametrize(("cap", "names"), [
    # ptrace and process_vm_* are everyone's on kernels >= 4.8 (see the 4.7 test)
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise")),
    ("CAP_SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_TIME", ("settimeofday", "clock_settime", "clock_settime64", "stime")),
    ("CAP_SYS_NICE", ("mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node")),
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
])
def test_capability_groups(cap: str, names: tuple[str, ...]) -> None:
    without, with_cap = _default(), _default(cap)
    for name in names:
        assert not _allowed_plainly(without, name), name
        assert _allowed_plainly(with_cap, name), name
    # only that group changes: nothing else is added or removed
    added = {e[0] for e in _entries(with_cap) - _entries(without)}
    assert added == set(names)
    assert _entries(without) <= _entries(with_cap)


def test_capability_names_without_prefix_or_in_lower_case() -> None:
    assert _entries(sp.resolve(sp.DEFAULT, ["sys_admin"], "x86_64", NEW_KERNEL)) == \
        _entries(sp.resolve(sp.DEFAULT, ["CAP_SYS_ADMIN"], "x86_64", NEW_KERNEL))


def test_chroot_needs_sys_chroot() -> None:
    caps = [c for c in DOCKER_CAPS if c != "CAP_SYS_CHROOT"]
    assert not _rules(sp.resolve(sp.DEFAULT, caps, "x86_64", NEW_KERNEL), "chroot")


def test_ptrace_before_4_8_needs_sys_ptrace() -> None:
    old = _default(kernel=(4, 7))
    assert not _rules(old, "ptrace") and not _rules(old, "process_vm_writev")
    assert _allowed_plainly(_default("CAP_SYS_PTRACE", kernel=(4, 7)), "ptrace")
    assert _allowed_plainly(_default(kernel=(4, 8)), "ptrace")
    assert _allowed_plainly(_default(kernel=(5, 0)), "ptrace")


def test_socket_and_personality_are_argument_checked() -> None:
    res = _default()
    assert [(s["args"][0]["op"], s["args"][0]["value"]) for s in _rules(res, "socket")] == [
        ("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
    assert sorted(s["args"][0]["value"] for s in _rules(res, "personality")) == [
        0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(s["args"][0]["op"] == "SCMP_CMP_EQ" for s in _rules(res, "personality"))


@pytest.mark.parametrize(("arch", "architectures", "present", "absent"), [
    ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
     ("arch_prctl", "modify_ldt"), ("breakpoint", "s390_runtime_instr")),
    ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], ("arch_prctl",), ()),
    ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
     ("breakpoint", "cacheflush", "set_tls", "sync_file_range2"), ("arch_prctl", "modify_ldt")),
    ("armv7l", None, ("arm_fadvise64_64",), ("arch_prctl",)),
    ("i686", None, ("modify_ldt",), ("arch_prctl",)),
    ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"], ("s390_pci_mmio_read",), ("arch_prctl",)),
    ("ppc64le", None, ("swapcontext", "sync_file_range2"), ("breakpoint",)),
    ("riscv64", ["SCMP_ARCH_RISCV64"], ("riscv_flush_icache",), ("modify_ldt",)),
])
def test_architectures(arch: str, architectures: list[str] | None, present: tuple[str, ...],
                       absent: tuple[str, ...]) -> None:
    res = _default(arch=arch)
    assert res.get("architectures") == architectures
    for name in present:
        assert _allowed_plainly(res, name), name
    for name in absent:
        assert not _rules(res, name), name


def test_s390_clone_flags_are_the_second_argument() -> None:
    (clone,) = _rules(_default(arch="s390x"), "clone")
    assert clone["args"][0]["index"] == 1
    (clone,) = _rules(_default(arch="x86_64"), "clone")
    assert clone["args"][0]["index"] == 0


def test_every_resolution_compiles_with_libseccomp() -> None:
    from matou.linux.seccomp import Filter
    from matou.oci.default_spec import default_spec
    from matou.oci.runtime_spec import parse_spec

    for extra in ((), ("CAP_SYS_ADMIN",), ("CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_BPF")):
        spec = default_spec()
        spec["linux"]["seccomp"] = sp.for_container([], [*DOCKER_CAPS, *extra], False)
        parsed = parse_spec(spec).seccomp
        assert parsed is not None
        try:
            Filter(parsed).release()
        except Unsupported as e:
            pytest.skip(str(e))


CUSTOM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": None}],
    "syscalls": [
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["chmod", "fchmod"], "action": "SCMP_ACT_ERRNO",
         "excludes": {"caps": ["CAP_FOWNER"]}, "comment": "why not"},
        {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS",
         "includes": {"arches": ["arm64"], "minKernel": "5.4"}},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ioctl"], "action": "SCMP_ACT_LOG",
         "args": [{"index": 1, "value": 0xFF00, "valueTwo": 0x5400,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
    ],
}


def test_custom_profile_resolved_per_container() -> None:
    res = sp.for_container([f"seccomp={json.dumps(CUSTOM)}"], ["CAP_FOWNER"], False)
    assert res is not None and res["defaultAction"] == "SCMP_ACT_ALLOW"
    assert "defaultErrnoRet" not in res
    syscalls = res["syscalls"]
    assert syscalls[0] == {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    assert not _rules(res, "chmod")  # excluded: the container holds CAP_FOWNER
    assert _rules(res, "kill") == [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                    "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]
    assert _rules(res, "ioctl")[0]["args"] == [
        {"index": 1, "value": 0xFF00, "valueTwo": 0x5400, "op": "SCMP_CMP_MASKED_EQ"}]

    profile = sp.parse(json.dumps(CUSTOM))
    x86 = sp.resolve(profile, [], "x86_64", NEW_KERNEL)
    assert x86["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert _rules(x86, "chmod") and not _rules(x86, "reboot")
    arm = sp.resolve(profile, [], "aarch64", (5, 4))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert _rules(arm, "reboot")[0]["action"] == "SCMP_ACT_KILL_PROCESS"
    assert not _rules(sp.resolve(profile, [], "aarch64", (5, 3)), "reboot")


def test_custom_profile_with_architectures_flags_and_excluded_kernel() -> None:
    text = json.dumps({
        "DefaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,  # Go matches any case
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                      "excludes": {"minKernel": "5.10", "arches": ["s390x"]}}]})
    old = sp.resolve(sp.parse(text), [], "x86_64", (5, 9))
    assert old == {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                   "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                   "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "/run/agent.sock",
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    assert sp.resolve(sp.parse(text), [], "x86_64", (5, 10))["syscalls"] == []
    assert sp.resolve(sp.parse(text), [], "s390x", (5, 9))["syscalls"] == []


def test_custom_profile_compiles_with_libseccomp() -> None:
    from matou.linux.seccomp import Filter
    from matou.oci.default_spec import default_spec
    from matou.oci.runtime_spec import parse_spec

    spec = default_spec()
    spec["linux"]["seccomp"] = sp.for_container([f"seccomp={json.dumps(CUSTOM)}"], [], False)
    parsed = parse_spec(spec).seccomp
    assert parsed is not None
    try:
        Filter(parsed).release()
    except Unsupported as e:
        pytest.skip(str(e))


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "invalid JSON"),
    ("/etc/docker/seccomp.json", "JSON content is expected, not a file name"),
    ("[]", "profile must be an object"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}', "syscalls must be a list"),
    ('{"defaultAction": 7}', "defaultAction must be a string"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction"),
    ('{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}',
     "defaultAction is missing"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}',
     r"syscalls\[0\]: unknown action ''"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], '
     '"action": "SCMP_ACT_ALLOW"}]}', "both 'name' and 'names'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], '
     '"archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}', "both 'architectures' and 'archMap'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ERRNO", "errnoRet": -1}]}', "errnoRet must be an unsigned integer"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}',
     "unknown operator"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}', "invalid kernel version"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "0.0"}}]}', "invalid kernel version"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "includes": {"caps": "CAP_X"}}]}', "caps must be a list"),
])
def test_malformed_profiles(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sp.for_container([f"seccomp={text}"], list(DOCKER_CAPS), False)


def test_unconfined_privileged_and_builtin() -> None:
    caps = list(DOCKER_CAPS)
    assert sp.for_container(["seccomp=unconfined"], caps, False) is None
    assert sp.for_container(["seccomp:unconfined"], caps, False) is None
    assert sp.for_container([], caps, True) is None
    assert sp.for_container(["seccomp=builtin"], caps, True) is None
    default = sp.resolve(sp.DEFAULT, caps)
    assert sp.for_container([], caps, False) == default
    assert sp.for_container(["no-new-privileges", "seccomp=builtin"], caps, False) == default
    # the last seccomp option wins, as in Docker
    assert sp.for_container(["seccomp=unconfined", "seccomp=builtin"], caps, False) == default
    assert sp.for_container(["seccomp=builtin", "seccomp=unconfined"], caps, False) is None
    # a profile without defaultAction nor syscalls turns seccomp off, as in Docker
    assert sp.for_container(["seccomp={}"], caps, False) is None


def test_privileged_with_an_explicit_profile_keeps_it() -> None:
    res = sp.for_container([f"seccomp={json.dumps(CUSTOM)}"], [], True)
    assert res is not None and _rules(res, "mkdir")


def test_host_kernel_and_docker_arch() -> None:
    major, minor = sp.host_kernel()
    assert major >= 3 and minor >= 0
    assert [sp.docker_arch(m) for m in ("x86_64", "aarch64", "armv7l", "i686", "amd64")] == [
        "amd64", "arm64", "arm", "x86", "amd64"]


@pytest.mark.skipif(REFERENCE is None, reason="no ../shared/reference/seccomp-default.json")
@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "s390x", "ppc64le", "riscv64", "i686"])
@pytest.mark.parametrize("kernel", [(4, 7), (6, 1)])
def test_same_as_dockers_default_profile(arch: str, kernel: tuple[int, int]) -> None:
    assert REFERENCE is not None
    reference = sp.parse(REFERENCE.read_text())
    cap_sets: list[tuple[str, ...]] = [
        (), DOCKER_CAPS, (*DOCKER_CAPS, "CAP_SYS_ADMIN"), (*DOCKER_CAPS, "CAP_SYS_PTRACE"),
        (*DOCKER_CAPS, "CAP_SYS_MODULE", "CAP_SYS_TIME", "CAP_SYS_NICE", "CAP_BPF"),
        ("CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_DAC_READ_SEARCH", "CAP_SYS_RAWIO",
         "CAP_SYS_PACCT", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_PERFMON", "CAP_SYS_PTRACE"),
    ]
    for caps in cap_sets:
        ours = sp.resolve(sp.DEFAULT, caps, arch, kernel)
        theirs = sp.resolve(reference, caps, arch, kernel)
        assert _entries(ours) == _entries(theirs), caps
        assert {k: v for k, v in ours.items() if k != "syscalls"} == \
            {k: v for k, v in theirs.items() if k != "syscalls"}
