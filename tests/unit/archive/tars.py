"""Build layer tars in memory for tests, and describe directory trees to compare them."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MTIME = 1_600_000_000


@dataclass
class M:
    """One tar member: ``kind`` is file, dir, symlink, link, chr, blk or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    linkname: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
          "fifo": tarfile.FIFOTYPE}


def make_tar(*members: M, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            ti = tarfile.TarInfo(m.name)
            ti.type = _TYPES[m.kind]
            ti.mode = m.mode if m.mode is not None else (0o755 if m.kind == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime = m.uid, m.gid, m.mtime
            ti.linkname = m.linkname
            ti.devmajor, ti.devminor = m.dev
            pax = dict(m.pax)
            for k, v in m.xattrs.items():
                pax["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
            ti.pax_headers = pax
            if m.kind == "file":
                ti.size = len(m.data)
                tar.addfile(ti, io.BytesIO(m.data))
            else:
                tar.addfile(ti)
    return buf.getvalue()


def tree(root: str | Path, *, mtimes: bool = True, owners: bool = True) -> dict[str, Any]:
    """Everything about a tree that a layer should carry, by relative path."""
    root = str(root)
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            d: dict[str, Any] = {"mode": st.st_mode}
            if owners:
                d["owner"] = (st.st_uid, st.st_gid)
            if mtimes:
                d["mtime"] = st.st_mtime_ns // 1_000_000_000
            if stat.S_ISREG(st.st_mode):
                d["sha"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    d["link"] = inodes.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISLNK(st.st_mode):
                d["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                d["rdev"] = st.st_rdev
            try:
                d["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False)
                               for k in sorted(os.listxattr(p, follow_symlinks=False))}
            except OSError:
                d["xattrs"] = {}
            out[rel] = d
    return out
