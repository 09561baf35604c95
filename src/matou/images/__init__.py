"""Pull/unpack/import/export of images (filled by the images issue).

May import: content, snapshots, archive, linux, oci, errors."""
