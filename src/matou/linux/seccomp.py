"""A seccomp filter from the runtime spec, compiled by libseccomp (through ctypes).

The filter is built in the runtime's own process before it forks into the container,
and only ``load()`` runs in the container: the library is never looked up inside the
container's root.

Compiling Docker's default profile (~380 rules, three architectures) and generating its
BPF costs ~10 ms per process. ``program()`` keeps the generated BPF in a root-only cache
directory, keyed by the filter's spec, libseccomp's version and the machine, so that
every later container and exec with the same filter loads the program with one
seccomp(2) call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import zlib
from collections import Counter
from typing import NamedTuple

from matou.errors import InvalidArgument, SystemError_, Unsupported
from matou.oci.runtime_spec import Seccomp, SeccompSyscall

ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_FLAG_ATTRS = {  # enum scmp_filter_attr
    "SECCOMP_FILTER_FLAG_TSYNC": 4,
    "SECCOMP_FILTER_FLAG_LOG": 6,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,
}
FLAGS = tuple(_FLAG_ATTRS)
_ATTR_CTL_NNP = 3
ARCHES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",  # in Docker's default archMap
}


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = "libseccomp.so.2"  # not find_library: it runs ldconfig, on every start
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise Unsupported(f"seccomp: cannot load libseccomp `{name}`: {e}") from e
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_version.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def _action(name: str, errno_ret: int | None, where: str) -> int:
    if name not in ACTIONS:
        if name == "SCMP_ACT_NOTIFY":
            raise Unsupported(f"{where}: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath)")
        raise InvalidArgument(f"{where}: unknown seccomp action {name!r}")
    value = ACTIONS[name]
    if name == "SCMP_ACT_ERRNO" or name == "SCMP_ACT_TRACE":
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


class Filter:
    """A compiled filter: build in the runtime, ``load()`` in the container process."""

    def __init__(self, spec: Seccomp) -> None:
        lib = _library()
        self._lib = lib
        default = _action(spec.default_action, spec.default_errno_ret, "linux.seccomp")
        ctx = lib.seccomp_init(default)
        if not ctx:
            raise InvalidArgument(f"seccomp: cannot init with {spec.default_action}")
        self._ctx = ctx
        # libseccomp sets no_new_privs at load by default; the spec decides that instead.
        lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        for flag in spec.flags:
            attr = _FLAG_ATTRS.get(flag)
            if attr is None:
                raise InvalidArgument(f"linux.seccomp.flags: unknown flag {flag!r}")
            self._call(lib.seccomp_attr_set(ctx, attr, 1), "seccomp_attr_set", flag)
        for arch in spec.architectures:
            token = lib.seccomp_arch_resolve_name(ARCHES.get(arch, arch.lower()).encode())
            if token == 0:
                raise InvalidArgument(f"linux.seccomp.architectures: unknown arch {arch!r}")
            ret = lib.seccomp_arch_add(ctx, token)
            if ret < 0 and -ret != errno.EEXIST:
                self._call(ret, "seccomp_arch_add", arch)
        for i, call in enumerate(spec.syscalls):
            self._add(call, default, f"linux.seccomp.syscalls[{i}]")

    def _call(self, ret: int, what: str, operand: str) -> None:
        if ret < 0:
            raise SystemError_(what, operand, -ret)

    def _add(self, call: SeccompSyscall, default: int, where: str) -> None:
        action = _action(call.action, call.errno_ret, where)
        if action == default:
            return  # libseccomp refuses a rule that repeats the default (runc skips it too)
        conds = []
        for a in call.args:
            op = OPERATORS.get(a.op)
            if op is None:
                raise InvalidArgument(f"{where}: unknown seccomp operator {a.op!r}")
            if not 0 <= a.arg_index < 6:
                raise InvalidArgument(f"{where}: argument index {a.arg_index} out of range")
            conds.append(_ArgCmp(a.arg_index, op, a.value, a.value_two))
        # Conditions on one argument each are ANDed in one rule; several on the same
        # argument cannot be, so (as runc) each becomes a rule of its own, ORed.
        repeated = any(n > 1 for n in Counter(c.arg for c in conds).values())
        groups = [[c] for c in conds] if repeated else [conds]
        for name in call.names:
            nr = self._lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:
                continue  # unknown on this kernel/arch: ignored, as runc and crun do
            for group in groups:
                arr = (_ArgCmp * len(group))(*group) if group else None
                ret = self._lib.seccomp_rule_add_array(self._ctx, action, nr, len(group), arr)
                self._call(ret, "seccomp_rule_add", name)

    def load(self) -> None:
        self._call(self._lib.seccomp_load(self._ctx), "seccomp_load", "filter")

    def export(self) -> bytes:
        """The BPF program libseccomp would load (struct sock_filter[])."""
        fd = os.memfd_create("matou-seccomp", os.MFD_CLOEXEC)
        try:
            self._call(self._lib.seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf",
                       "filter")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None


_SECCOMP_SET_MODE_FILTER = 1
_FLAG_BITS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
              "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


class Program(NamedTuple):
    """A generated BPF program and the seccomp(2) flags to load it with."""
    bpf: bytes
    flags: int

    def load(self) -> None:
        from matou.linux import libc

        libc.seccomp_set_filter(self.flags, self.bpf, _SockFprog(len(self.bpf) // 8, self.bpf))


def _lib_version() -> str:
    lib = _library()
    try:
        ver = ctypes.cast(lib.seccomp_version(), ctypes.POINTER(ctypes.c_uint * 3)).contents
        return ".".join(str(x) for x in ver)
    except (AttributeError, ValueError):
        return "?"


def program(spec: Seccomp, cache_dir: str | None = None) -> Program:
    """The BPF of ``spec``: from the cache when it is there, else compiled (and cached)."""
    flags = 0
    for flag in spec.flags:
        if flag not in _FLAG_BITS:
            raise InvalidArgument(f"linux.seccomp.flags: unknown flag {flag!r}")
        flags |= _FLAG_BITS[flag]
    # an entry is named by a checksum of its key and starts with the key itself, compared
    # in full on reading (no hashlib: it would map OpenSSL into every shim)
    key = repr((spec, _lib_version(), os.uname().machine)).encode() + b"\0"
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}.bpf")
        try:
            with open(path, "rb") as cached:
                data = cached.read()
            bpf = data[len(key):]
            if data.startswith(key) and bpf and len(bpf) % 8 == 0:
                return Program(bpf, flags)
        except OSError:
            pass
    compiled = Filter(spec)
    try:
        bpf = compiled.export()
    finally:
        compiled.release()
    if path is not None and cache_dir is not None:
        try:
            os.makedirs(cache_dir, 0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as out:
                out.write(key + bpf)
            os.rename(tmp, path)
        except OSError:
            pass  # a cache that cannot be written is only slower
    return Program(bpf, flags)
