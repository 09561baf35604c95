"""Images: the store, unpacking, archive formats, import/commit/export.

May import: content, snapshots, archive, linux, oci, errors.
"""
