from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from matou.archive.apply import ApplyResult, LayerError, apply_layer
from matou.archive.compression import compressor
from matou.errors import InvalidArgument
from tests.unit.archive.tars import MTIME, M, make_tar

CHOWN = os.geteuid() == 0  # owners in these tars are 0:0; only root may set them


def apply(data: bytes, root: Path, **kw: Any) -> ApplyResult:
    kw.setdefault("chown", CHOWN)
    return apply_layer(io.BytesIO(data), str(root), **kw)


def compress(data: bytes, kind: str) -> bytes:
    out = io.BytesIO()
    w = compressor(out, kind)
    w.write(data)
    w.close()
    return out.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


LAYER = make_tar(M("etc", "dir"), M("etc/hostname", data=b"matou\n"),
                 M("bin", "dir"), M("bin/sh", data=os.urandom(5000), mode=0o755))


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_diff_id_is_sha256_of_uncompressed_tar(kind: str, root: Path) -> None:
    result = apply(compress(LAYER, kind), root)
    assert result == ApplyResult("sha256:" + hashlib.sha256(LAYER).hexdigest(), len(LAYER))
    assert (root / "etc/hostname").read_bytes() == b"matou\n"


def test_diff_id_covers_trailing_padding(root: Path) -> None:
    data = LAYER + bytes(20 * 512)  # more zero blocks than tarfile reads
    assert apply(data, root).diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert apply(data, root).size == len(data)


@pytest.mark.parametrize("data", [b"", bytes(1024), bytes(10240)])
def test_empty_layers(data: bytes, root: Path) -> None:
    r = apply(data, root)
    assert r.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert r.size == len(data)
    assert os.listdir(root) == []


def test_non_seekable_source(root: Path) -> None:
    r, w = os.pipe()
    blob = compress(LAYER, "gzip")
    os.write(w, blob)  # fits in the pipe buffer
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as f:
        result = apply_layer(f, str(root), chown=CHOWN)  # type: ignore[arg-type]
    assert result.size == len(LAYER)
    assert (root / "bin/sh").stat().st_mode & 0o777 == 0o755


def test_files_dirs_modes_and_mtimes(root: Path) -> None:
    data = make_tar(
        M("d", "dir", mode=0o750, mtime=MTIME + 1),
        M("d/suid", data=b"x", mode=0o4755, mtime=MTIME + 2),
        M("d/sticky", "dir", mode=0o1777),
        M("d/sticky/f", data=b"y", mode=0o600, mtime=MTIME + 3),
        M("empty", data=b""),
        M("nested/implicit/file", data=b"z"),  # parents not in the tar
    )
    apply(data, root)
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o750
    assert os.stat(root / "d").st_mtime == MTIME + 1  # set after its children were added
    assert stat.S_IMODE(os.stat(root / "d/suid").st_mode) == 0o4755
    assert os.stat(root / "d/suid").st_mtime == MTIME + 2
    assert stat.S_IMODE(os.stat(root / "d/sticky").st_mode) == 0o1777
    assert (root / "d/sticky/f").read_bytes() == b"y"
    assert (root / "empty").read_bytes() == b""
    assert (root / "nested/implicit/file").read_bytes() == b"z"
    assert stat.S_IMODE(os.stat(root / "nested").st_mode) == 0o755


def test_leading_slash_and_dot_slash_are_dropped(root: Path) -> None:
    apply(make_tar(M("./", "dir"), M("/abs", data=b"1"), M("./rel/./x", data=b"2"),
                   M("//dbl//y", data=b"3")), root)
    assert (root / "abs").read_bytes() == b"1"
    assert (root / "rel/x").read_bytes() == b"2"
    assert (root / "dbl/y").read_bytes() == b"3"


def test_pax_mtime_with_nanoseconds(root: Path) -> None:
    apply(make_tar(M("f", data=b"", pax={"mtime": "1600000000.123456789"})), root)
    assert os.stat(root / "f").st_mtime_ns == 1_600_000_000_123_456_789


def test_symlinks_are_created_as_is_never_followed(root: Path, tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("keep")
    apply(make_tar(M("abs", "symlink", linkname="/etc/passwd", mtime=MTIME + 5),
                   M("rel", "symlink", linkname="../victim"),
                   M("dangling", "symlink", linkname="no/such/thing"),
                   # a file over a symlink replaces the link; it does not write through it
                   M("rel", data=b"new")), root)
    assert os.readlink(root / "abs") == "/etc/passwd"
    assert os.lstat(root / "abs").st_mtime == MTIME + 5
    assert os.readlink(root / "dangling") == "no/such/thing"
    assert not (root / "rel").is_symlink()
    assert (root / "rel").read_bytes() == b"new"
    assert (tmp_path / "victim").read_text() == "keep"


def test_hardlinks(root: Path) -> None:
    apply(make_tar(M("a", data=b"shared"), M("d", "dir"), M("d/b", "link", linkname="a"),
                   M("s", "symlink", linkname="a"), M("hs", "link", linkname="./s")), root)
    assert os.stat(root / "a").st_ino == os.stat(root / "d/b").st_ino
    assert os.stat(root / "a").st_nlink == 2
    # a hard link to a symlink links the symlink itself
    assert os.lstat(root / "hs").st_ino == os.lstat(root / "s").st_ino
    assert os.readlink(root / "hs") == "a"


def test_hardlink_to_lower_layer_file(root: Path) -> None:
    (root / "lower").write_text("from below")
    apply(make_tar(M("up", "link", linkname="/lower")), root)
    assert (root / "up").read_text() == "from below"


@pytest.mark.parametrize("link", ["missing", "d/missing", "d", "self"])
def test_bad_hardlinks(link: str, root: Path) -> None:
    with pytest.raises(LayerError, match="hard link"):
        apply(make_tar(M("d", "dir"), M("self", "link", linkname=link)), root)


def test_replacing_entries(root: Path) -> None:
    (root / "was_dir/sub").mkdir(parents=True)
    (root / "was_dir/sub/f").write_text("old")
    (root / "was_file").write_text("old")
    (root / "merge").mkdir()
    (root / "merge/lower").write_text("lower")
    apply(make_tar(M("was_dir", data=b"now a file"), M("was_file", "dir"),
                   M("was_file/x", data=b"x"), M("merge", "dir", mode=0o700),
                   M("merge/upper", data=b"upper")), root)
    assert (root / "was_dir").read_bytes() == b"now a file"
    assert (root / "was_file/x").read_bytes() == b"x"
    assert sorted(os.listdir(root / "merge")) == ["lower", "upper"]
    assert stat.S_IMODE(os.stat(root / "merge").st_mode) == 0o700


def test_fifo_and_xattrs(root: Path) -> None:
    apply(make_tar(M("p", "fifo", mode=0o620),
                   M("f", data=b"x", xattrs={"user.matou": b"\x00\xffbinary"})), root)
    assert stat.S_ISFIFO(os.lstat(root / "p").st_mode)
    assert stat.S_IMODE(os.lstat(root / "p").st_mode) == 0o620
    try:
        assert os.getxattr(root / "f", "user.matou") == b"\x00\xffbinary"
    except OSError as e:  # a filesystem without user xattrs: skipped silently by apply
        assert e.errno in (95,)


def test_devices_refused_when_not_allowed(root: Path) -> None:
    with pytest.raises(LayerError, match="`dev/null`: device nodes are not allowed"):
        apply(make_tar(M("dev", "dir"), M("dev/null", "chr", dev=(1, 3))), root,
              allow_devices=False)
    # fifos are always fine
    apply(make_tar(M("p", "fifo")), root, allow_devices=False)


# -- whiteouts ("delete" mode) ------------------------------------------------------


def _lower(root: Path) -> None:
    for d in ("a/b/c", "keep", "opq/sub"):
        (root / d).mkdir(parents=True)
    for f in ("a/file", "a/b/c/deep", "keep/x", "opq/lower1", "opq/sub/lower2", "gone"):
        (root / f).write_text(f)


def test_whiteout_file_and_tree(root: Path) -> None:
    _lower(root)
    apply(make_tar(M(".wh.gone"), M("a", "dir"), M("a/.wh.b"), M(".wh.nonexistent"),
                   M("missing/.wh.x")), root)
    assert not (root / "gone").exists()
    assert not (root / "a/b").exists()
    assert (root / "a/file").exists()
    assert not (root / "missing").exists()
    # whiteout files are never created
    assert not list(root.rglob(".wh.*"))


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_dir_keeps_this_layers_entries(marker_first: bool, root: Path) -> None:
    _lower(root)
    marker = [M("opq/.wh..wh..opq")]
    siblings = [M("opq/new", data=b"new"), M("opq/sub", "dir"),
                M("opq/sub/new2", data=b"n2"), M("opq/implicit/deep", data=b"d")]
    members = [M("opq", "dir"), *(marker + siblings if marker_first else siblings + marker)]
    apply(make_tar(*members), root)
    assert sorted(os.listdir(root / "opq")) == ["implicit", "new", "sub"]
    assert os.listdir(root / "opq/sub") == ["new2"]  # lower content of a kept dir goes too
    assert (root / "opq/implicit/deep").read_bytes() == b"d"
    assert (root / "keep/x").exists()


def test_aufs_metadata_is_skipped(root: Path) -> None:
    apply(make_tar(M(".wh..wh.plnk", "dir"), M(".wh..wh.aufs")), root)
    assert os.listdir(root) == []


@pytest.mark.parametrize("name", ["d/.wh..", "d/.wh."])
def test_bad_whiteout_names(name: str, root: Path) -> None:
    with pytest.raises(LayerError, match="bad whiteout"):
        apply(make_tar(M("d", "dir"), M(name)), root)


def test_bad_whiteout_mode(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="whiteout mode `aufs`"):
        apply(LAYER, root, whiteout_mode="aufs")


# -- malformed and hostile streams ---------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/../b", "..", "x/.."])
def test_dotdot_is_refused(name: str, root: Path) -> None:
    with pytest.raises(LayerError, match=r"`\.\.`"):
        apply(make_tar(M(name, data=b"x")), root)


def test_parent_symlink_is_refused(root: Path) -> None:
    with pytest.raises(LayerError, match="parent `a` is a symlink"):
        apply(make_tar(M("a", "symlink", linkname="."), M("a/x", data=b"x")), root)


def test_parent_file_is_refused(root: Path) -> None:
    with pytest.raises(LayerError, match="parent `f` is not a directory"):
        apply(make_tar(M("f", data=b"x"), M("f/x", data=b"x")), root)


def test_max_size_stops_a_gzip_bomb(root: Path) -> None:
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as g:
        g.write(make_tar(M("zeros", data=b""))[:512])  # a header claiming nothing
        for _ in range(64):
            g.write(bytes(1 << 20))
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(LayerError, match="exceeds the limit of 1048576 bytes"):
        apply(bomb.getvalue(), root, max_size=1 << 20)


def test_max_size_allows_exact_size(root: Path) -> None:
    assert apply(LAYER, root, max_size=len(LAYER)).size == len(LAYER)
    with pytest.raises(LayerError, match="exceeds"):
        apply(LAYER, root, max_size=len(LAYER) - 1)


def test_corrupt_streams(root: Path) -> None:
    gz = compress(LAYER, "gzip")
    with pytest.raises(LayerError, match="corrupt compressed stream"):
        apply(gz[: len(gz) // 2], root)
    with pytest.raises(LayerError, match="corrupt compressed stream"):
        apply(gz[:20] + bytes(100) + gz[120:], root)
    with pytest.raises(LayerError, match="corrupt or truncated tar header"):
        apply(b"this is not a tar" * 100, root)
    with pytest.raises(LayerError, match="corrupt or truncated tar header"):
        apply(LAYER[:700], root)  # second header cut short
    with pytest.raises(LayerError, match="truncated data"):
        apply(make_tar(M("big", data=os.urandom(5000)))[:2048], root)
    broken = bytearray(LAYER)
    broken[1536 + 148] ^= 1  # the third header's checksum: not "end of archive"
    with pytest.raises(LayerError, match="corrupt"):
        apply(bytes(broken), root)


def test_oversized_pax_header_is_refused(root: Path) -> None:
    ti = tarfile.TarInfo("pax")
    ti.type = tarfile.XHDTYPE
    ti.size = 1 << 40
    header = ti.tobuf(tarfile.GNU_FORMAT)  # base-256 size
    with pytest.raises(LayerError, match="too large"):
        apply(header + bytes(4096), root)


def test_unsupported_member_type(root: Path) -> None:
    ti = tarfile.TarInfo("vol")
    ti.type = b"V"
    with pytest.raises(LayerError, match="unsupported tar entry type"):
        apply(ti.tobuf(tarfile.GNU_FORMAT) + bytes(1024), root)


def test_errors_are_invalid_argument_and_leave_no_thread(root: Path) -> None:
    assert issubclass(LayerError, InvalidArgument)
    with pytest.raises(LayerError):
        apply(compress(make_tar(M("../x")), "gzip"), root)
    with pytest.raises(LayerError):
        apply(compress(LAYER, "zstd")[:-40], root)
    assert not [t for t in threading.enumerate() if t.name == "matou-layer-read"]
