"""libc, loaded once: the syscalls Python's os module does not wrap (or wraps only on 3.12+).

Every wrapper raises ``SystemError_`` naming the operand and keeping the errno.
Constants are quoted from the kernel's uapi headers (linux/sched.h, linux/mount.h,
linux/prctl.h, linux/capability.h).
"""

from __future__ import annotations

import ctypes
import os

from matou.errors import SystemError_

# by soname, not ctypes.util.find_library: that runs ldconfig on every start
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

# linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
# the names of /proc/PID/ns/* entries per spec namespace type
NAMESPACE_PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# linux/mount.h
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# linux/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "setns": 308, "unshare": 272, "capget": 125, "capset": 126,
               "close_range": 436, "pidfd_open": 434, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "setns": 268, "unshare": 97, "capget": 90, "capset": 91,
                "close_range": 436, "pidfd_open": 434, "seccomp": 277},
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.personality.argtypes = [ctypes.c_ulong]


def _check(ret: int, what: str, operand: str) -> int:
    if ret < 0:
        raise SystemError_(what, operand, ctypes.get_errno())
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    ret = _libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old))
    _check(ret, "pivot_root", new_root)


def unshare(flags: int) -> None:
    _check(_libc.syscall(_NR["unshare"], ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int, operand: str) -> None:
    _check(_libc.syscall(_NR["setns"], ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", operand)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl", str(option))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname", name)


def personality(persona: int) -> None:
    _check(_libc.personality(persona), "personality", hex(persona))


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec (CLOSE_RANGE_CLOEXEC, Linux 5.11)."""
    close_range_cloexec_flag = 1 << 2
    ret = _libc.syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                        ctypes.c_uint(close_range_cloexec_flag))
    _check(ret, "close_range", str(first))


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(_NR["pidfd_open"], ctypes.c_int(pid), ctypes.c_uint(0)),
                  "pidfd_open", str(pid))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread, as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_NR["capget"], ctypes.byref(hdr), data), "capget", "self")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    mask = 0xFFFFFFFF
    data[0].effective, data[1].effective = effective & mask, effective >> 32
    data[0].permitted, data[1].permitted = permitted & mask, permitted >> 32
    data[0].inheritable, data[1].inheritable = inheritable & mask, inheritable >> 32
    _check(_libc.syscall(_NR["capset"], ctypes.byref(hdr), data), "capset", "self")


_NS_GET_NSTYPE = 0xB703  # ioctl_ns(2): the CLONE_NEW* flag of a namespace fd


def ns_type(fd: int, operand: str) -> int:
    """The CLONE_NEW* type of the namespace ``fd`` refers to (a /proc/PID/ns link or a
    bind mount of one)."""
    import fcntl

    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as e:
        raise SystemError_("namespace type", operand, e.errno or 22) from e


def seccomp_set_filter(flags: int, keep: bytes, fprog: ctypes.Structure) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog); ``keep`` is the program that
    ``fprog`` points into, held alive for the call."""
    ret = _libc.syscall(_NR["seccomp"], ctypes.c_uint(1), ctypes.c_uint(flags),
                        ctypes.byref(fprog))
    del keep
    _check(ret, "seccomp", "filter")
