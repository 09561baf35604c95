"""The only layer that talks to the kernel through ctypes/libc: syscalls, mounts, capabilities, seccomp, ptys.

May import: oci, errors."""
