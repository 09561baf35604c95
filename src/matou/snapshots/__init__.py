"""Overlay and native snapshotters (filled by the images issue).

May import: linux, oci, errors."""
