"""The only layer that talks to the kernel through ctypes/libc.

Syscalls, mounts, capabilities, seccomp, ptys, /proc.

May import: oci, errors."""
