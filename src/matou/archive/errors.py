"""The archive layer's one error kind.

    matou.errors.InvalidArgument
    └── LayerError      a hostile or malformed layer tar; names the member path

Failures of the host (ENOSPC, EIO) stay ``matou.errors.SystemError_``.

May import: errors.
"""

from __future__ import annotations

from matou.errors import InvalidArgument


class LayerError(InvalidArgument):
    """A layer that must not be applied (escapes its root, malformed, too large)."""
