"""Error kinds shared by every layer; each edge maps them to its wire once.

    MatouError
    ├── InvalidArgument      bad input from a caller (config, flags, names)
    ├── NotFound             the named thing does not exist
    ├── AlreadyExists        the name is taken
    ├── FailedPrecondition   the thing exists but is in the wrong state
    ├── Unsupported          this host or this build cannot do it
    └── SystemError_         a syscall or file operation failed (keeps the errno)

Messages are lower-case and name their operand (``mount `/proc`: EPERM``).
"""

from __future__ import annotations

import errno as _errno
import os


class MatouError(Exception):
    """Base of every error matou raises on purpose."""


class InvalidArgument(MatouError):
    pass


class NotFound(MatouError):
    pass


class AlreadyExists(MatouError):
    pass


class FailedPrecondition(MatouError):
    pass


class Unsupported(MatouError):
    pass


class SystemError_(MatouError):
    """A failed syscall: ``what `operand`: ENAME (strerror)``; keeps ``errno``."""

    def __init__(self, what: str, operand: str, err: int) -> None:
        name = _errno.errorcode.get(err, str(err))
        super().__init__(f"{what} `{operand}`: {name} ({os.strerror(err)})")
        self.errno = err
        self.what = what
        self.operand = operand


def from_oserror(what: str, operand: str, e: OSError) -> SystemError_:
    """Wrap an OSError raised by the stdlib in matou's shape (chain it with ``from e``)."""
    return SystemError_(what, operand, e.errno or _errno.EIO)
