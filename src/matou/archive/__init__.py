"""Layer tars: apply one onto a directory, write one from a tree or a snapshot's changes.

    compression   sniff gzip/zstd/xz/bzip2 on read; gzip (isal)/zstd/none on write
    apply         apply_layer(): a layer onto a directory, safely (see its docstring)
    diff          write_tar(), write_overlay_diff(), write_native_diff()
    reader        the decompressed stream, hashed and read ahead in a thread
    tree          a directory tree reached only through directory fds
    errors        LayerError

May import: linux, oci, errors (and stdlib, isal, zstandard)."""
