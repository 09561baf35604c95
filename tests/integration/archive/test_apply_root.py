"""What only root can check: owners, devices, trusted/security xattrs, overlay whiteouts
(against a real overlayfs mount), and sparse files made by GNU tar."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from matou.archive.apply import apply_layer
from matou.archive.compression import compressor
from matou.archive.diff import write_overlay_diff, write_tar
from tests.unit.archive.tars import M, make_tar, tree

if os.geteuid() != 0:
    pytest.skip("integration tests need root", allow_module_level=True)

# security.capability v2: cap_net_bind_service, effective
CAPS = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def test_owners_modes_devices_xattrs(root: Path) -> None:
    apply_layer(io.BytesIO(make_tar(
        M("d", "dir", uid=3000, gid=3001, mode=0o2750),
        M("d/suid", data=b"x", uid=1000, gid=2000, mode=0o6755),
        M("d/cap", data=b"bin", uid=1000, gid=1000, mode=0o755,
          xattrs={"security.capability": CAPS, "trusted.matou": b"t", "user.matou": b"u"}),
        M("l", "symlink", linkname="/nowhere", uid=4000, gid=4001),
        M("null", "chr", dev=(1, 3), mode=0o666, uid=5, gid=6),
        M("loop", "blk", dev=(7, 0), mode=0o660),
        M("p", "fifo", mode=0o600, uid=7, gid=8),
        M("h", "link", linkname="d/suid"),
        # overlay's own xattrs are never taken from a layer
        M("o", "dir", xattrs={"trusted.overlay.opaque": b"y", "trusted.overlay.redirect":
                              b"/etc"}),
    )), str(root))
    st = os.stat(root / "d")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (3000, 3001, 0o2750)
    st = os.stat(root / "d/suid")  # setuid/setgid survive: the mode is set after chown
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o6755)
    assert os.getxattr(root / "d/cap", "security.capability") == CAPS  # set after chown
    assert os.getxattr(root / "d/cap", "trusted.matou") == b"t"
    st = os.lstat(root / "l")
    assert (st.st_uid, st.st_gid) == (4000, 4001)
    st = os.lstat(root / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o666, 5, 6)
    st = os.lstat(root / "loop")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 0)
    st = os.lstat(root / "p")
    assert stat.S_ISFIFO(st.st_mode) and (st.st_uid, st.st_gid) == (7, 8)
    assert os.stat(root / "h").st_ino == os.stat(root / "d/suid").st_ino
    assert os.listxattr(root / "o") == []


def test_write_tar_round_trip_as_root(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_bytes(b"bin")
    os.chown(src / "f", 1000, 1000)
    os.setxattr(src / "f", "security.capability", CAPS)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.symlink("f", src / "l")
    os.chown(src / "l", 42, 43, follow_symlinks=False)
    out = io.BytesIO()
    w = compressor(out, "zstd")
    write_tar(w, str(src))
    w.close()
    apply_layer(io.BytesIO(out.getvalue()), str(dst))
    assert tree(dst) == tree(src)


# -- overlay -------------------------------------------------------------------------


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(lower, upper, merged) dirs for an overlay mount; never left mounted."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "keep").write_text("keep")
    (lower / "gone").write_text("gone")
    (lower / "dir").mkdir()
    (lower / "dir/a").write_text("a")
    (lower / "dir/b").write_text("b")
    (lower / "opq").mkdir()
    (lower / "opq/old").write_text("old")
    (lower / "opq/olddir").mkdir()
    (lower / "opq/olddir/x").write_text("x")
    yield lower, upper, merged
    if os.path.ismount(merged):  # a test that failed between _mount and _umount
        _umount(merged)


def _mount(lower: Path, upper: Path, merged: Path) -> None:
    work = merged.parent / "work"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                   check=True, timeout=30)


def _umount(merged: Path) -> None:
    subprocess.run(["umount", str(merged)], check=True, timeout=30)


LAYER = make_tar(M(".wh.gone"), M("dir", "dir"), M("dir/.wh.a"),
                 M("opq", "dir"), M("opq/.wh..wh..opq"), M("opq/new", data=b"new"),
                 M("added", data=b"added"))


def test_overlay_whiteout_mode(overlay: tuple[Path, Path, Path]) -> None:
    lower, upper, merged = overlay
    apply_layer(io.BytesIO(LAYER), str(upper), whiteout_mode="overlay")
    for wh in ("gone", "dir/a"):
        st = os.lstat(upper / wh)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and st.st_uid == st.st_gid == 0
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"
    assert not list(upper.rglob(".wh.*"))
    _mount(lower, upper, merged)
    try:
        seen = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    finally:
        _umount(merged)
    assert seen == ["added", "dir", "dir/b", "keep", "opq", "opq/new"]


def test_overlay_diff_of_kernel_made_upper(overlay: tuple[Path, Path, Path],
                                           tmp_path: Path) -> None:
    """Changes made through a real overlay mount, exported from its upper dir and applied
    onto a copy of the lower dir, give the merged view."""
    lower, upper, merged = overlay
    _mount(lower, upper, merged)
    try:
        os.unlink(merged / "gone")
        os.unlink(merged / "dir/a")
        shutil.rmtree(merged / "opq")
        (merged / "opq").mkdir()  # overlayfs makes this one opaque
        (merged / "opq/new").write_text("new")
        (merged / "added").write_text("added")
        os.chown(merged / "keep", 1234, 1234)  # a metadata-only copy-up
        expect = tree(merged)
    finally:
        _umount(merged)
    out = io.BytesIO()
    write_overlay_diff(out, str(upper))
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert ".wh.gone" in names and "dir/.wh.a" in names
    assert names.index("opq") + 1 == names.index("opq/.wh..wh..opq")
    assert all(m.isreg() and m.size == 0 for m in members if "/.wh." in "/" + m.name)
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay.")
                   for m in members for k in m.pax_headers)
    target = tmp_path / "target"
    subprocess.run(["cp", "-a", str(lower), str(target)], check=True, timeout=60)
    apply_layer(io.BytesIO(out.getvalue()), str(target))
    assert tree(target) == expect


def test_overlay_diff_round_trips_through_overlay_mode(overlay: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    _, upper, _ = overlay
    apply_layer(io.BytesIO(LAYER), str(upper), whiteout_mode="overlay")
    out = io.BytesIO()
    write_overlay_diff(out, str(upper))
    upper2 = tmp_path / "upper2"
    upper2.mkdir()
    apply_layer(io.BytesIO(out.getvalue()), str(upper2), whiteout_mode="overlay")
    assert tree(upper2) == tree(upper)


# -- sparse files --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files_from_gnu_tar(fmt: str, tmp_path: Path, root: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(64 << 20)
        for off in (0, 10 << 20, (64 << 20) - 5000):
            f.seek(off)
            f.write(os.urandom(3000))
    (src / "plain").write_bytes(os.urandom(10000))
    tgz = tmp_path / "layer.tar.gz"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-czf", str(tgz), "-C", str(src),
                    "."], check=True, timeout=60)
    with tarfile.open(tgz) as tar:
        assert tar.getmember("./sparse").issparse()
    with open(tgz, "rb") as f:
        apply_layer(f, str(root))
    for name in ("sparse", "plain"):
        assert (hashlib.sha256((root / name).read_bytes()).hexdigest()
                == hashlib.sha256((src / name).read_bytes()).hexdigest())
    st = os.stat(root / "sparse")
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 4 << 20  # the holes stayed holes
