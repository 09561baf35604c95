"""Content-addressable blob store (filled by the images issue).

May import: linux, oci, errors."""
