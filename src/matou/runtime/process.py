"""The container process's last steps, shared by `create` (init) and `exec`.

``prepare`` runs in the runtime before any fork: it validates the process (capability
names, rlimit names) and compiles the seccomp filter, so that nothing in the container's
root is ever looked up to do it. ``become`` runs in the child, inside the container,
and ends in execve:

    rlimits → fds → cwd (checked: CVE-2024-21626) → [seccomp unless noNewPrivileges] →
    bounding set → groups/gid/uid (keeping caps) → effective/permitted/inheritable →
    ambient → noNewPrivileges → [seccomp if noNewPrivileges] → umask → execve
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import sys
from typing import NamedTuple, NoReturn

from matou.errors import InvalidArgument, SystemError_, from_oserror
from matou.linux import caps, libc
from matou.linux.seccomp import Program, program
from matou.oci.runtime_spec import Process, Spec

# asm-generic/resource.h (x86_64 and aarch64 share these numbers)
_RLIMITS = {
    f"RLIMIT_{name}": n
    for n, name in enumerate((
        "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
        "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
    ))
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_U64 = (1 << 64) - 1


class CapSets(NamedTuple):
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int


class Prepared(NamedTuple):
    process: Process
    caps: CapSets | None
    rlimits: list[tuple[int, int, int]]
    seccomp: Program | None
    preserve_fds: int = 0


def prepare(process: Process, spec: Spec, preserve_fds: int = 0,
            seccomp_cache: str | None = None) -> Prepared:
    if not process.args:
        raise InvalidArgument("config.json: process.args: must not be empty")
    capsets = None
    if process.capabilities is not None:
        c = process.capabilities
        capsets = CapSets(
            bounding=caps.mask(c.bounding, "process.capabilities.bounding"),
            effective=caps.mask(c.effective, "process.capabilities.effective"),
            permitted=caps.mask(c.permitted, "process.capabilities.permitted"),
            inheritable=caps.mask(c.inheritable, "process.capabilities.inheritable"),
            ambient=caps.mask(c.ambient, "process.capabilities.ambient"),
        )
    rlimits = []
    for rl in process.rlimits:
        res = _RLIMITS.get(rl.type)
        if res is None:
            raise InvalidArgument(f"config.json: process.rlimits: unknown rlimit {rl.type!r}")
        if rl.soft > rl.hard and rl.hard != _U64:
            raise InvalidArgument(f"config.json: process.rlimits: {rl.type} soft > hard")
        rlimits.append((res, _inf(rl.soft), _inf(rl.hard)))
    if process.apparmor_profile and not os.path.exists("/sys/kernel/security/apparmor"):
        raise InvalidArgument("process.apparmorProfile: AppArmor is not enabled on this host")
    if process.selinux_label and not os.path.exists("/sys/fs/selinux/enforce"):
        raise InvalidArgument("process.selinuxLabel: SELinux is not enabled on this host")
    seccomp = program(spec.seccomp, seccomp_cache) if spec.seccomp is not None else None
    return Prepared(process, capsets, rlimits, seccomp, preserve_fds)


def _inf(v: int) -> int:
    return resource.RLIM_INFINITY if v in (_U64, -1) else v


def env_path(env: tuple[str, ...]) -> str:
    for e in env:
        if e.startswith("PATH="):
            return e[5:]
    return DEFAULT_PATH


def find_executable(args0: str, env: tuple[str, ...], cwd: str) -> str:
    """Resolve args[0] in the current root the way runc does, with its error text."""
    if "/" in args0:
        path = args0 if args0.startswith("/") else os.path.join(cwd, args0)
        candidates = [path]
    else:
        candidates = [os.path.join(d or ".", args0) for d in env_path(env).split(":")]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return path
    if "/" in args0:
        raise InvalidArgument(f'exec: "{args0}": stat {args0}: no such file or directory')
    raise InvalidArgument(f'exec: "{args0}": executable file not found in $PATH')


def close_inherited(keep: set[int], preserve_fds: int = 0) -> None:
    """Close every fd >= 3 but ``keep`` and the preserved ones: a host directory fd left
    open could be reached as /proc/self/fd/N from inside (CVE-2024-21626)."""
    keep = keep | set(range(3, 3 + preserve_fds))
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def seal_imports() -> None:
    """After a fork into the container no module may be imported: its file would be
    looked up in the container's root and run with the runtime's privileges."""
    sys.path[:] = []
    sys.path_importer_cache.clear()


def _default_signals() -> None:
    """An ignored signal stays ignored across execve, and a shell may not trap a signal it
    started with ignored: Python ignores SIGPIPE, a shim ignores SIGTERM. The container
    process starts as any program does: default dispositions, nothing blocked."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def become(p: Prepared, exe: str) -> NoReturn:
    """Turn this process into the container process (runs inside the container)."""
    proc = p.process
    for res, soft, hard in p.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as e:
            raise SystemError_("setrlimit", str(res), getattr(e, "errno", None) or errno.EPERM
                               ) from e
    # fds the runtime still holds are close-on-exec; fds preserved for the process are not
    libc.close_range_cloexec(3 + p.preserve_fds)
    # as root, before seccomp (a filter may deny getcwd) — as runc and crun do
    try:
        os.chdir(proc.cwd)
        # the kernel reports a cwd outside our root as unreachable; never exec there
        if not os.getcwd().startswith("/"):
            raise SystemError_("chdir", proc.cwd, errno.ENOENT)
    except OSError as e:
        raise from_oserror("chdir", proc.cwd, e) from e
    if p.seccomp is not None and not proc.no_new_privileges:
        p.seccomp.load()  # needs CAP_SYS_ADMIN, still held here
    if p.caps is not None:
        caps.drop_bounding(p.caps.bounding)
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    user = proc.user
    try:
        os.setgroups(list(user.additional_gids))
    except PermissionError:
        if user.additional_gids:
            raise
    try:
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        raise from_oserror("set user", f"{user.uid}:{user.gid}", e) from e
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    if p.caps is not None:
        libc.capset(p.caps.effective, p.caps.permitted, p.caps.inheritable)
        caps.set_ambient(p.caps.ambient)
    if proc.no_new_privileges:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    if p.seccomp is not None and proc.no_new_privileges:
        p.seccomp.load()
    os.umask(0o022 if user.umask is None else user.umask)
    env = dict(e.partition("=")[::2] for e in proc.env)
    _default_signals()
    try:
        os.execve(exe, list(proc.args), env)
    except OSError as e:
        raise from_oserror("exec", exe, e) from e
