"""Layer tar apply/diff (filled by the images issue).

May import: linux, oci, errors."""
