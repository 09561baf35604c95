"""Docker's default seccomp profile, resolved for a container's capabilities by
matou.engine.seccomp_profile, enforced by matou-runtime on a busybox container."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import pytest

from matou.engine import seccomp_profile
from tests.integration.conftest import Bundle, Runtime

# Docker's 14 default capabilities
DOCKER_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def _as_docker(b: Bundle, caps: Sequence[str], security_opt: Sequence[str] = ()) -> Bundle:
    """The bundle with a Docker container's capabilities and seccomp profile."""
    b.spec["process"]["capabilities"] = {k: list(caps)
                                         for k in ("bounding", "effective", "permitted")}
    seccomp = seccomp_profile.for_container(list(security_opt), list(caps), False)
    if seccomp is None:
        b.spec["linux"].pop("seccomp", None)
    else:
        b.spec["linux"]["seccomp"] = seccomp
    return b.write()


def _sh(rt: Runtime, b: Bundle, script: str) -> str:
    p = rt.run(b, "sh", "-c", script)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    return p.stdout


def test_ordinary_syscalls_are_allowed(rt: Runtime, bundle: Bundle) -> None:
    _as_docker(bundle, DOCKER_CAPS)
    p = rt.run(bundle, "busybox", "true")
    assert p.returncode == 0, p.stderr
    out = _sh(rt, bundle, "echo hi > /tmp/f && cat /tmp/f && ls / >/dev/null && chroot / true"
                          " && (sleep 0 &) && wait && echo done")
    assert out == "hi\ndone\n"


def test_namespaces_and_mounts_are_refused_without_sys_admin(rt: Runtime,
                                                             bundle: Bundle) -> None:
    _as_docker(bundle, DOCKER_CAPS)
    out = _sh(rt, bundle, "unshare -U true 2>&1; echo rc=$?; unshare -n true 2>&1; echo rc=$?;"
                          " mount -t tmpfs none /tmp 2>&1; echo rc=$?")
    # busybox mount words EPERM as "permission denied (are you root?)"
    assert out.split("\n") == ["unshare: unshare(0x10000000): Operation not permitted", "rc=1",
                                "unshare: unshare(0x40000000): Operation not permitted", "rc=1",
                                "mount: permission denied (are you root?)", "rc=1", ""], out


def test_user_namespace_refused_by_the_filter_not_the_kernel(rt: Runtime,
                                                             bundle: Bundle) -> None:
    # unshare(CLONE_NEWUSER) needs no capability: unconfined it succeeds, so the EPERM
    # above is the profile's doing
    _as_docker(bundle, DOCKER_CAPS, ["seccomp=unconfined"])
    assert "seccomp" not in bundle.spec["linux"]
    assert _sh(rt, bundle, "unshare -U true && echo rc=$?") == "rc=0\n"


def test_sys_admin_allows_its_group(rt: Runtime, bundle: Bundle) -> None:
    _as_docker(bundle, [*DOCKER_CAPS, "CAP_SYS_ADMIN"])
    out = _sh(rt, bundle, "unshare -U true && unshare -n true && mount -t tmpfs none /tmp"
                          " && grep -c ' /tmp tmpfs' /proc/mounts && umount /tmp && echo ok")
    assert out == "1\nok\n"


# syscall numbers the busybox applets cannot reach; other architectures are skipped
_NR = {
    "x86_64": {"add_key": 248, "keyctl": 250, "clone3": 435},
    "aarch64": {"add_key": 217, "keyctl": 219, "clone3": 435},
}
_PROBE = """
import ctypes, errno, json, os, socket
NR = %s[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
def result(r):
    return "ok" if r != -1 else errno.errorcode.get(ctypes.get_errno(), "?")
def call(name, *args):
    ctypes.set_errno(0)
    return result(libc.syscall(ctypes.c_long(NR[name]), *args))
L = ctypes.c_long
out = {
    "getpid": result(os.getpid()),
    "keyctl": call("keyctl", L(0), L(-3), L(0)),  # KEYCTL_GET_KEYRING_ID, session
    "add_key": call("add_key", b"user", b"matou", b"x", L(1), L(-3)),
    "clone3": call("clone3", None, L(0)),  # EINVAL from the kernel once past the filter
    "personality_query": result(libc.personality(ctypes.c_ulong(0xFFFFFFFF))),
    "personality_exec": result(libc.personality(ctypes.c_ulong(0x0400000))),
}
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    out["vsock"] = "ok"
except OSError as e:
    out["vsock"] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


def _probe(rt: Runtime, b: Bundle) -> dict[str, str]:
    """Run the probe with the host's Python, its /usr bound read-only into the container."""
    machine = os.uname().machine
    python = os.path.realpath(sys.executable)
    if machine not in _NR or not python.startswith("/usr/"):
        pytest.skip(f"no probe for {machine} / {python}")
    for d in ("lib", "lib64", "lib32"):
        host = f"/{d}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), b.rootfs / d)
        elif os.path.isdir(host):
            (b.rootfs / d).mkdir(exist_ok=True)
            b.spec["mounts"].append({"destination": host, "type": "bind", "source": host,
                                     "options": ["rbind", "ro"]})
    b.spec["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                             "options": ["rbind", "ro"]})
    p = rt.run(b, python, "-I", "-S", "-c", _PROBE % json.dumps(_NR))
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out: dict[str, str] = json.loads(p.stdout)
    return out


def test_calls_outside_the_profile(rt: Runtime, bundle: Bundle) -> None:
    out = _probe(rt, _as_docker(bundle, DOCKER_CAPS))
    assert out == {"getpid": "ok", "keyctl": "EPERM", "add_key": "EPERM", "clone3": "ENOSYS",
                   "personality_query": "ok", "personality_exec": "EPERM", "vsock": "EPERM"}


def test_clone3_reaches_the_kernel_with_sys_admin(rt: Runtime, bundle: Bundle) -> None:
    out = _probe(rt, _as_docker(bundle, [*DOCKER_CAPS, "CAP_SYS_ADMIN"]))
    assert out["clone3"] == "EINVAL"
    assert out["keyctl"] == "EPERM" and out["vsock"] == "EPERM"  # no capability opens these
