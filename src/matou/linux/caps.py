"""Linux capabilities by name (linux/capability.h) and applying the five sets to this process."""

from __future__ import annotations

from collections.abc import Iterable

from matou.errors import InvalidArgument, SystemError_
from matou.linux import libc

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_BY_NAME = {name: bit for bit, name in enumerate(CAPABILITIES)}


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def bounding() -> list[str]:
    """The capabilities this process may still hand on: "all" for a privileged container
    (a host or outer container may have dropped some; asking for those fails with EPERM)."""
    try:
        with open("/proc/self/status") as f:
            bits = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        bits = (1 << (last_cap() + 1)) - 1
    return [name for bit, name in enumerate(CAPABILITIES[: last_cap() + 1]) if bits >> bit & 1]


def mask(names: Iterable[str], where: str) -> int:
    """The bit mask of ``names``; an unknown name is an error, one this kernel lacks is dropped."""
    top = last_cap()
    out = 0
    for name in names:
        bit = _BY_NAME.get(name.upper() if name.upper().startswith("CAP_") else "")
        if bit is None:
            raise InvalidArgument(f"{where}: unknown capability {name!r}")
        if bit <= top:
            out |= 1 << bit
    return out


def drop_bounding(keep: int) -> None:
    for bit in range(last_cap() + 1):
        if not keep & (1 << bit) and libc.prctl(libc.PR_CAPBSET_READ, bit) == 1:
            libc.prctl(libc.PR_CAPBSET_DROP, bit)


def set_ambient(keep: int) -> list[str]:
    """Raise the ambient set; returns the names the kernel refused (not in permitted and
    inheritable), which runc too only warns about."""
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    refused = []
    for bit in range(last_cap() + 1):
        if keep & (1 << bit):
            try:
                libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, bit)
            except SystemError_:
                refused.append(CAPABILITIES[bit])
    return refused
