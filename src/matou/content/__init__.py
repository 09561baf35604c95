"""Content-addressable blob store.

May import: linux, oci, errors.
"""

from matou.content.store import ContentStore, Writer

__all__ = ["ContentStore", "Writer"]
