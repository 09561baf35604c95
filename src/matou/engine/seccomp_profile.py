"""Docker's default seccomp profile, in matou's words, and its resolution per container.

A profile in Docker's format carries conditional rules: a rule may be ``included`` only
when the container holds some capabilities, runs on some architectures or on a kernel
at least so new, and ``excluded`` on the same kinds of grounds. Resolving a profile for
one container decides every condition and leaves a plain OCI ``linux.seccomp``:

    Profile (rules with includes/excludes, archMap)
        │  resolve(profile, caps, arch, kernel)
        ▼
    {"defaultAction", "defaultErrnoRet", "architectures", "syscalls": [...]}   OCI

Conditions, as Docker decides them: a rule is dropped when the host's architecture is
in ``excludes.arches``, when the container's bounding set holds any of
``excludes.caps``, or when the kernel is at least ``excludes.minKernel``; it is kept only
when the architecture is in ``includes.arches`` (if given), the bounding set holds all
of ``includes.caps``, and the kernel is at least ``includes.minKernel``. Architecture
names in conditions are Docker's (Go's): ``amd64``, ``arm64``, ``x86``, ``s390x``, …;
``archMap`` picks the entry of the host's seccomp architecture and lists it with its
sub-architectures (x86_64 → x86_64, x86, x32: 32-bit and x32 binaries run too).

Pure: imports only ``matou.errors``; the host's architecture and kernel come from
``platform``/``os`` and can be passed in instead.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from matou.errors import InvalidArgument, Unsupported

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
EPERM = 1
ENOSYS = 38

# the OCI runtime spec's vocabulary; anything else would only fail later, at start
ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
})


@dataclass(frozen=True)
class Arg:
    """A condition on one syscall argument (``value`` is the mask for MASKED_EQ)."""

    index: int
    value: int
    op: str
    value_two: int = 0


@dataclass(frozen=True)
class Cond:
    """One side of a rule's condition; an empty field decides nothing."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str = ALLOW
    errno_ret: int | None = None
    args: tuple[Arg, ...] = ()
    includes: Cond = Cond()
    excludes: Cond = Cond()


@dataclass(frozen=True)
class Profile:
    default_action: str
    rules: tuple[Rule, ...] = ()
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    # seccomp arch of the host → the arches a filter for it covers (itself first)
    arch_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str = ""
    listener_metadata: str = ""


def _allow(*names: str, caps: Iterable[str] = (), arches: Iterable[str] = (),
           min_kernel: tuple[int, int] | None = None, args: Iterable[Arg] = ()) -> Rule:
    return Rule(tuple(names), ALLOW, None, tuple(args),
                Cond(tuple(caps), tuple(arches), min_kernel))


# ---------------------------------------------------------------------------------------
# The default policy. Anything not allowed below fails with EPERM. Left out on purpose
# (denied to every container): keyring calls (add_key, keyctl, request_key: keys are not
# namespaced), io_uring (a long run of kernel CVEs), userfaultfd, kexec_*, swapon/off,
# nfsservctl, uselib, _sysctl, pivot_root, and the obsolete calls of old ABIs.

# personality(2) values a container may set: plain Linux, 32-bit, a uname faked as 2.6
# (UNAME26, for old software), their mix, and 0xffffffff which only asks the current one.
# Others (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, …) weaken exploit mitigations.
_PER_LINUX, _PER_LINUX32, _UNAME26, _PER_QUERY = 0x0, 0x8, 0x0020000, 0xFFFFFFFF

# clone(2) flags that create namespaces: NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
# NEWPID | NEWNET. Without CAP_SYS_ADMIN clone may run only when none of them is set.
_CLONE_NEW_NAMESPACES = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                         | 0x20000000 | 0x40000000)

# socket(2) address families refused: AF_ALG (38, the kernel crypto API, a history of
# CVEs) and AF_VSOCK (40, reaches the hypervisor or host, across the net namespace).
_AF_ALG, _AF_NFC, _AF_VSOCK = 38, 39, 40

_ALWAYS = (
    # Files and directories of the container's own filesystem: mount namespace, DAC and
    # capabilities confine them; name_to_handle_at only names (open_by_handle_at opens,
    # below); listmount / statmount read the container's own mount table. mknod is left
    # to CAP_MKNOD and the device cgroup.
    _allow(
        "access", "chdir", "chmod", "chown", "chown32", "creat", "faccessat", "faccessat2",
        "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fgetxattr",
        "flistxattr", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
        "fstatfs64", "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "getxattrat",
        "lchown", "lchown32", "lgetxattr", "link", "linkat", "listmount", "listxattr",
        "listxattrat", "llistxattr", "lremovexattr", "lsetxattr", "lstat", "lstat64", "mkdir",
        "mkdirat", "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat",
        "openat2", "readlink", "readlinkat", "removexattr", "removexattrat", "rename", "renameat",
        "renameat2", "rmdir", "setxattr", "setxattrat", "stat", "stat64", "statmount", "statfs",
        "statfs64", "statx", "symlink", "symlinkat", "truncate", "truncate64", "ftruncate",
        "ftruncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
        "utimes",
    ),
    # Reading and writing through descriptors the process already holds.
    _allow(
        "cachestat", "close", "close_range", "copy_file_range", "dup", "dup2", "dup3",
        "fadvise64", "fadvise64_64", "fallocate", "fcntl", "fcntl64", "fdatasync", "flock",
        "fsync", "ioctl", "_llseek", "lseek", "pipe", "pipe2", "pread64", "preadv", "preadv2",
        "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readv", "sendfile",
        "sendfile64", "splice", "sync", "sync_file_range", "syncfs", "tee", "vmsplice",
        "write", "writev",
    ),
    # Waiting for descriptors and events. fanotify_mark is harmless alone: the group it
    # needs comes from fanotify_init, which needs CAP_SYS_ADMIN (below).
    _allow(
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect",
        "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd",
        "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
        "timerfd_settime", "timerfd_settime64",
    ),
    # Linux AIO and I/O priorities (io_uring is not here: see above).
    _allow(
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "io_setup", "io_submit", "ioprio_get", "ioprio_set",
    ),
    # The process's own memory. NUMA policy calls are apart (CAP_SYS_NICE, below).
    _allow(
        "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
        "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap",
        "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "remap_file_pages",
    ),
    # Processes and threads inside the container's pid namespace: creating them (clone is
    # conditioned below), running programs, waiting, limits, and restricting oneself
    # further (seccomp, landlock, prctl).
    _allow(
        "execve", "execveat", "exit", "exit_group", "fork", "vfork", "getpgid", "getpgrp",
        "getpid", "getppid", "getpriority", "setpriority", "getsid", "setsid", "setpgid",
        "gettid", "getrlimit", "setrlimit", "prlimit64", "ugetrlimit", "getrusage",
        "get_robust_list", "set_robust_list", "get_thread_area", "set_thread_area",
        "set_tid_address", "rseq", "restart_syscall", "wait4", "waitid", "waitpid", "times",
        "sysinfo", "uname", "prctl", "pidfd_open", "pidfd_send_signal", "process_mrelease",
        "seccomp", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
        "capget", "capset", "getrandom", "riscv_hwprobe", "uretprobe",
    ),
    # Credentials: CAP_SETUID / CAP_SETGID and the user namespace decide what may change.
    _allow(
        "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
        "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
        "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
        "setgroups", "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32",
        "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
    ),
    # Scheduling of one's own processes (raising priority needs CAP_SYS_NICE anyway).
    _allow(
        "getcpu", "sched_getaffinity", "sched_getattr", "sched_getparam",
        "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    ),
    # Signals, within the pid namespace.
    _allow(
        "alarm", "kill", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask",
        "sigreturn", "tgkill", "tkill",
    ),
    # Futexes and sleeping.
    _allow(
        "clock_nanosleep", "clock_nanosleep_time64", "futex", "futex_requeue", "futex_time64",
        "futex_wait", "futex_waitv", "futex_wake", "nanosleep",
    ),
    # Reading clocks and arming timers. adjtimex / clock_adjtime only read without
    # CAP_SYS_TIME; setting the clock is apart (below).
    _allow(
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "getitimer", "setitimer", "gettimeofday", "time",
        "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_gettime64", "timer_settime", "timer_settime64",
    ),
    # Sockets in the container's net namespace (socket() itself is conditioned below, by
    # address family; socketcall multiplexes them on 32-bit x86).
    _allow(
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
        "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    ),
    # System V and POSIX IPC, in the container's IPC namespace.
    _allow(
        "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
        "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
        "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    ),
)

_CONDITIONED = (
    # Before 4.8 a tracer could change a traced syscall after seccomp had checked it: on
    # older kernels ptrace and its memory-access kin are a way around the filter.
    _allow("process_vm_readv", "process_vm_writev", "ptrace", min_kernel=(4, 8)),
    # socket(): every address family but AF_ALG and AF_VSOCK (see above)
    _allow("socket", args=[Arg(0, _AF_ALG, "SCMP_CMP_LT")]),
    _allow("socket", args=[Arg(0, _AF_NFC, "SCMP_CMP_EQ")]),
    _allow("socket", args=[Arg(0, _AF_VSOCK, "SCMP_CMP_GT")]),
    # personality(): the harmless values only (see above)
    *(_allow("personality", args=[Arg(0, v, "SCMP_CMP_EQ")])
      for v in (_PER_LINUX, _PER_LINUX32, _UNAME26, _UNAME26 | _PER_LINUX32, _PER_QUERY)),
    # Calls that exist only on some architectures, allowed where they do.
    _allow("sync_file_range2", "swapcontext", arches=["ppc64le"]),
    _allow("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
           "cacheflush", "set_tls", arches=["arm", "arm64"]),
    _allow("arch_prctl", arches=["amd64", "x32"]),
    _allow("modify_ldt", arches=["amd64", "x32", "x86"]),
    _allow("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
           arches=["s390", "s390x"]),
    _allow("riscv_flush_icache", arches=["riscv64"]),
    # Opening a file by handle skips path lookup and so the container's root: the
    # "shocker" escape. Only with CAP_DAC_READ_SEARCH, which the kernel asks for anyway.
    _allow("open_by_handle_at", caps=["CAP_DAC_READ_SEARCH"]),
    # What CAP_SYS_ADMIN is for: namespaces, mounts, BPF, perf, quotas, hostnames.
    # Without the capability the kernel would refuse most of these too; the filter
    # keeps their code out of reach (unshare(CLONE_NEWUSER) needs no capability at all).
    _allow("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
           "fspick", "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules",
           "lsm_set_self_attr", "mount", "mount_setattr", "move_mount", "open_tree",
           "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
           "setns", "syslog", "umount", "umount2", "unshare", caps=["CAP_SYS_ADMIN"]),
    # Without CAP_SYS_ADMIN clone may make threads and processes, not namespaces. s390
    # passes the flags as the second argument.
    Rule(("clone",), args=(Arg(0, _CLONE_NEW_NAMESPACES, "SCMP_CMP_MASKED_EQ"),),
         excludes=Cond(caps=("CAP_SYS_ADMIN",), arches=("s390", "s390x"))),
    Rule(("clone",), args=(Arg(1, _CLONE_NEW_NAMESPACES, "SCMP_CMP_MASKED_EQ"),),
         includes=Cond(arches=("s390", "s390x")), excludes=Cond(caps=("CAP_SYS_ADMIN",))),
    # clone3 passes its flags in memory, out of the filter's sight: refuse it with ENOSYS
    # so that libc falls back to clone, whose flags can be checked.
    Rule(("clone3",), ERRNO, ENOSYS, excludes=Cond(caps=("CAP_SYS_ADMIN",))),
    # One capability, one group: the calls the capability is about.
    _allow("reboot", caps=["CAP_SYS_BOOT"]),
    _allow("chroot", caps=["CAP_SYS_CHROOT"]),
    _allow("delete_module", "init_module", "finit_module", caps=["CAP_SYS_MODULE"]),
    _allow("acct", caps=["CAP_SYS_PACCT"]),
    _allow("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
           "ptrace", caps=["CAP_SYS_PTRACE"]),
    _allow("iopl", "ioperm", caps=["CAP_SYS_RAWIO"]),
    _allow("settimeofday", "stime", "clock_settime", "clock_settime64", caps=["CAP_SYS_TIME"]),
    _allow("vhangup", caps=["CAP_SYS_TTY_CONFIG"]),
    _allow("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
           caps=["CAP_SYS_NICE"]),
    _allow("syslog", caps=["CAP_SYSLOG"]),
    _allow("bpf", caps=["CAP_BPF"]),
    _allow("perf_event_open", caps=["CAP_PERFMON"]),
)

DEFAULT = Profile(
    default_action=ERRNO,
    default_errno_ret=EPERM,
    arch_map=(
        ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
        ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
        ("SCMP_ARCH_MIPS64", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
        ("SCMP_ARCH_MIPS64N32", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
        ("SCMP_ARCH_MIPSEL64", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
        ("SCMP_ARCH_MIPSEL64N32", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
        ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
        ("SCMP_ARCH_RISCV64", ()),
        ("SCMP_ARCH_LOONGARCH64", ()),
    ),
    rules=(*_ALWAYS, *_CONDITIONED),
)

# ---------------------------------------------------------------------------------------
# Resolution

# platform.machine() → Docker's (Go's) architecture name, used in includes/excludes
_DOCKER_ARCH = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "x86", "i486": "x86", "i586": "x86",
    "i686": "x86", "x86": "x86", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
    "ppc64": "ppc64", "ppc": "ppc", "s390x": "s390x", "s390": "s390", "riscv64": "riscv64",
    "loongarch64": "loongarch64", "mips64": "mips64", "mips64el": "mipsel64",
    "mips": "mips", "mipsel": "mipsel",
}
# Docker's architecture name → the seccomp architecture it picks in archMap
_SCMP_ARCH = {
    "amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
    "arm": "SCMP_ARCH_ARM", "arm64": "SCMP_ARCH_AARCH64", "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
    "loongarch64": "SCMP_ARCH_LOONGARCH64", "mips": "SCMP_ARCH_MIPS",
    "mipsel": "SCMP_ARCH_MIPSEL", "mips64": "SCMP_ARCH_MIPS64",
    "mipsel64": "SCMP_ARCH_MIPSEL64", "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64n32": "SCMP_ARCH_MIPSEL64N32",
}


def docker_arch(machine: str) -> str:
    """Docker's name for an architecture given as ``uname -m`` prints it (or Docker's)."""
    m = machine.lower()
    if m.startswith("arm") and m != "arm64":
        return "arm"  # armv6l, armv7l, armv8l (32-bit userland)
    return _DOCKER_ARCH.get(m, m)


def host_kernel() -> tuple[int, int]:
    """The running kernel's version and major revision (``6.1.0-18-amd64`` → (6, 1))."""
    release = os.uname().release
    m = re.match(r"(\d+)\.(\d+)", release)
    if m is None:
        raise Unsupported(f"seccomp: cannot parse kernel release `{release}`")
    return int(m.group(1)), int(m.group(2))


def _norm_cap(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def _applies(rule: Rule, caps: frozenset[str], arch: str,
             kernel: tuple[int, int] | None) -> bool:
    def kernel_at_least(v: tuple[int, int]) -> bool:
        return (kernel if kernel is not None else host_kernel()) >= v

    ex, inc = rule.excludes, rule.includes
    if arch in ex.arches or any(_norm_cap(c) in caps for c in ex.caps):
        return False
    if ex.min_kernel is not None and kernel_at_least(ex.min_kernel):
        return False
    if inc.arches and arch not in inc.arches:
        return False
    if not all(_norm_cap(c) in caps for c in inc.caps):
        return False
    return inc.min_kernel is None or kernel_at_least(inc.min_kernel)


def _oci_rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
    if rule.errno_ret is not None:
        out["errnoRet"] = rule.errno_ret
    if rule.args:
        out["args"] = [{"index": a.index, "value": a.value, "op": a.op,
                        **({"valueTwo": a.value_two} if a.value_two else {})}
                       for a in rule.args]
    return out


def resolve(profile: Profile, caps: Collection[str], arch: str = platform.machine(),
            kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` of ``profile`` for a container whose bounding set is
    ``caps``, on architecture ``arch`` (``uname -m`` or Docker's name) and a kernel of
    version ``kernel`` (the running one when None; read only if a rule asks)."""
    held = frozenset(_norm_cap(c) for c in caps)
    name = docker_arch(arch)
    architectures = list(profile.architectures)
    scmp = _SCMP_ARCH.get(name)
    for main, subs in profile.arch_map:
        if main == scmp:
            architectures += [main, *subs]
            break
    out: dict[str, Any] = {"defaultAction": profile.default_action}
    if profile.default_errno_ret is not None:
        out["defaultErrnoRet"] = profile.default_errno_ret
    if architectures:
        out["architectures"] = architectures
    if profile.flags:
        out["flags"] = list(profile.flags)
    if profile.listener_path:
        out["listenerPath"] = profile.listener_path
    if profile.listener_metadata:
        out["listenerMetadata"] = profile.listener_metadata
    out["syscalls"] = [_oci_rule(r) for r in profile.rules if _applies(r, held, name, kernel)]
    return out


# ---------------------------------------------------------------------------------------
# Docker's JSON profile format (what `docker run --security-opt seccomp=FILE` sends)

class _Obj:
    """A JSON object read as Go's encoding/json reads it: keys match case-insensitively,
    unknown keys are ignored, a wrong type is an error naming the field."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise InvalidArgument(f"seccomp profile: {where} must be an object")
        self._d = {str(k).lower(): v for k, v in value.items()}
        self.where = where

    def _get(self, key: str) -> Any:
        return self._d.get(key.lower())

    def text(self, key: str) -> str:
        v = self._get(key)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise InvalidArgument(f"seccomp profile: {self.where}.{key} must be a string")
        return v

    def uint(self, key: str, bits: int = 64) -> int | None:
        v = self._get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << bits:
            raise InvalidArgument(
                f"seccomp profile: {self.where}.{key} must be an unsigned integer, not {v!r}")
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        v = self._get(key)
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise InvalidArgument(
                f"seccomp profile: {self.where}.{key} must be a list of strings")
        return tuple(v)

    def objs(self, key: str) -> list[_Obj]:
        v = self._get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise InvalidArgument(f"seccomp profile: {self.where}.{key} must be a list")
        return [_Obj(x, f"{self.where}.{key}[{i}]") for i, x in enumerate(v)]

    def obj(self, key: str) -> _Obj | None:
        v = self._get(key)
        return None if v is None else _Obj(v, f"{self.where}.{key}")


def _kernel_version(text: str, where: str) -> tuple[int, int] | None:
    """``"4.8"`` → (4, 8); each part fits a byte and 0.0 is refused, as in Docker."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    v = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if v == (0, 0) or max(v) > 255:
        raise InvalidArgument(f"seccomp profile: {where}: invalid kernel version {text!r}, "
                              "expected \"<kernel>.<major>\"")
    return v


def _cond(o: _Obj | None) -> Cond:
    if o is None:
        return Cond()
    return Cond(o.texts("caps"), o.texts("arches"),
                _kernel_version(o.text("minKernel"), f"{o.where}.minKernel"))


def _rule(o: _Obj) -> Rule:
    name, names = o.text("name"), o.texts("names")
    if name and names:
        raise InvalidArgument(
            f"seccomp profile: {o.where}: both 'name' and 'names' are given, use one")
    action = o.text("action")
    if action not in ACTIONS:
        raise InvalidArgument(f"seccomp profile: {o.where}: unknown action {action!r}")
    args = []
    for a in o.objs("args"):
        op = a.text("op")
        if op not in OPERATORS:
            raise InvalidArgument(f"seccomp profile: {a.where}: unknown operator {op!r}")
        args.append(Arg(a.uint("index", 32) or 0, a.uint("value") or 0, op,
                        a.uint("valueTwo") or 0))
    return Rule((name,) if name else names, action, o.uint("errnoRet", 32), tuple(args),
                _cond(o.obj("includes")), _cond(o.obj("excludes")))


def parse(text: str) -> Profile:
    """A profile from Docker's JSON format (``names`` or the older ``name``, ``archMap``
    or ``architectures``, ``includes``/``excludes``); InvalidArgument when malformed."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        hint = "" if text.lstrip().startswith(("{", "[")) else \
            " (the profile's JSON content is expected, not a file name)"
        raise InvalidArgument(f"seccomp profile: invalid JSON: {e}{hint}") from e
    o = _Obj(raw, "profile")
    architectures = o.texts("architectures")
    arch_map = tuple((a.text("architecture"), a.texts("subArchitectures"))
                     for a in o.objs("archMap"))
    if architectures and arch_map:
        raise InvalidArgument(
            "seccomp profile: both 'architectures' and 'archMap' are given, use one")
    rules = tuple(_rule(s) for s in o.objs("syscalls"))
    default = o.text("defaultAction")
    if default and default not in ACTIONS:
        raise InvalidArgument(f"seccomp profile: unknown defaultAction {default!r}")
    if not default and rules:
        raise InvalidArgument("seccomp profile: defaultAction is missing")
    return Profile(default, rules, o.uint("defaultErrnoRet", 32), architectures, arch_map,
                   o.texts("flags"), o.text("listenerPath"), o.text("listenerMetadata"))


def _choice(security_opt: Iterable[str]) -> str:
    """The container's ``seccomp`` security option; the last one given wins, as in Docker.
    ``=`` is the separator; ``:`` is the deprecated one Docker still reads."""
    choice = ""
    for opt in security_opt:
        if opt.startswith(("seccomp=", "seccomp:")):
            choice = opt[len("seccomp="):]
    return choice


def for_container(security_opt: list[str], caps: list[str],
                  privileged: bool, daemon_default: str = "") -> dict[str, Any] | None:
    """The OCI ``linux.seccomp`` of a Docker container, or None for no filter.

    ``seccomp=unconfined`` → None; ``seccomp=<JSON>`` (the docker CLI sends the file's
    content) → that profile, even for a privileged container, as in Docker; otherwise
    the daemon's default (``daemon_default``: its --seccomp-profile, as JSON text, or
    "unconfined"; "" or "builtin" for Docker's), which a privileged container goes
    without. ``caps`` is the container's bounding set.
    """
    choice = _choice(security_opt)
    if choice == "unconfined":
        return None
    if choice in ("", "builtin"):
        if privileged or daemon_default == "unconfined":
            return None
        if daemon_default not in ("", "builtin"):
            profile = parse(daemon_default)
            if not profile.default_action and not profile.rules:
                return None
            return resolve(profile, caps)
        return resolve(DEFAULT, caps)
    profile = parse(choice)
    if not profile.default_action and not profile.rules:
        return None  # an empty profile turns seccomp off, as in Docker
    return resolve(profile, caps)
