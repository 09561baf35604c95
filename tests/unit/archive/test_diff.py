from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from matou.archive.apply import apply_layer
from matou.archive.diff import write_native_diff, write_tar
from tests.unit.archive.tars import tree

CHOWN = os.geteuid() == 0
T0 = 1_500_000_000


def _set_xattr(p: Path, key: str, value: bytes) -> bool:
    try:
        os.setxattr(p, key, value, follow_symlinks=False)
        return True
    except OSError:
        return False  # no user xattrs on this filesystem


def _populate(src: Path) -> None:
    (src / "etc/ssl").mkdir(parents=True)
    (src / "etc/hostname").write_text("matou\n")
    (src / "etc/ssl/big").write_bytes(os.urandom(3 << 20))
    (src / "bin").mkdir()
    (src / "bin/tool").write_bytes(b"\x7fELF" + os.urandom(1000))
    os.chmod(src / "bin/tool", 0o4755)
    os.link(src / "bin/tool", src / "bin/tool-alias")
    os.symlink("tool", src / "bin/rel-link")
    os.symlink("/etc/passwd", src / "abs-link")
    os.symlink("nowhere", src / "dangling")
    os.mkfifo(src / "fifo", 0o640)
    (src / "tmp").mkdir(mode=0o1777)
    os.chmod(src / "tmp", 0o1777)
    (src / ("long-" + "x" * 150)).write_text("a long name")
    (src / "ünï").write_text("utf-8 name")
    (src / os.fsdecode(b"raw-\xff")).write_text("not utf-8")
    (src / "empty").mkdir()
    _set_xattr(src / "etc/hostname", "user.matou", b"\x00\xff")
    for dirpath, dirnames, filenames in os.walk(src):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (T0, T0), follow_symlinks=False)
    os.utime(src, (T0, T0))


def _tar_of(root: Path) -> bytes:
    out = io.BytesIO()
    write_tar(out, str(root))
    return out.getvalue()


def test_write_tar_round_trip(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _populate(src)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))  # sockets are left out, as Docker does
    data = _tar_of(src)
    apply_layer(io.BytesIO(data), str(dst), chown=CHOWN)
    os.unlink(src / "sock")
    assert tree(dst, owners=CHOWN) == tree(src, owners=CHOWN)
    assert os.stat(dst / "bin/tool").st_ino == os.stat(dst / "bin/tool-alias").st_ino
    assert os.readlink(dst / "abs-link") == "/etc/passwd"


def test_write_tar_format(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _populate(src)
    data = _tar_of(src)
    assert data == _tar_of(src)  # deterministic
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:4] == ["abs-link", "bin", "bin/rel-link", "bin/tool"]
    assert not any(n.startswith(("/", "./")) for n in names)
    by = {m.name: m for m in members}
    assert by["bin/tool-alias"].islnk() and by["bin/tool-alias"].linkname == "bin/tool"
    assert by["bin/tool"].mode == 0o4755
    assert by["fifo"].isfifo()
    assert by["etc/ssl/big"].size == 3 << 20
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert all(m.mtime == T0 for m in members)
    assert os.fsdecode(b"raw-\xff") in by
    # a directory's contents follow it, sorted by bytes
    assert names.index("etc") < names.index("etc/hostname") < names.index("etc/ssl")


def test_prefix_filter(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _populate(src)
    out = io.BytesIO()
    write_tar(out, str(src), prefix_filter=lambda rel: rel == "etc" or rel.startswith("etc/"))
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == ["etc", "etc/hostname", "etc/ssl", "etc/ssl/big"]


def test_symlinked_root_content_is_not_followed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret/key").write_text("host secret")
    src.mkdir()
    os.symlink("../secret", src / "link")
    data = _tar_of(src)
    assert b"host secret" not in data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [(m.name, m.issym()) for m in tar] == [("link", True)]


def _copy(src: Path, dst: Path) -> None:
    """A native snapshot: a full copy keeping modes, owners, ns mtimes, xattrs, links."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True, timeout=60)


def _change(upper: Path) -> None:
    """What a container might do to its rootfs."""
    (upper / "etc/hostname").write_text("changed\n")  # content + size + mtime
    (upper / "etc/new").write_text("added")
    os.unlink(upper / "dangling")
    shutil.rmtree(upper / "etc/ssl")  # one whiteout for the tree
    os.chmod(upper / "bin/tool", 0o755)  # metadata only
    os.utime(upper / "bin/tool", (T0, T0))
    os.unlink(upper / "abs-link")
    os.symlink("/etc/shadow", upper / "abs-link")  # retargeted
    os.utime(upper / "abs-link", (T0, T0), follow_symlinks=False)
    os.unlink(upper / "fifo")
    (upper / "fifo").mkdir()  # file -> dir
    (upper / "fifo/inside").write_text("in")
    shutil.rmtree(upper / "empty")
    (upper / "empty").write_text("dir -> file")
    (upper / "newdir/sub").mkdir(parents=True)
    (upper / "newdir/sub/f").write_text("deep")
    os.link(upper / "newdir/sub/f", upper / "newdir/f-link")
    _set_xattr(upper / "tmp", "user.changed", b"1")


def test_native_diff_reproduces_upper(tmp_path: Path) -> None:
    lower, upper, target = tmp_path / "lower", tmp_path / "upper", tmp_path / "target"
    lower.mkdir()
    _populate(lower)
    _copy(lower, upper)
    _copy(lower, target)
    _change(upper)
    out = io.BytesIO()
    write_native_diff(out, str(lower), str(upper))
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert ".wh.dangling" in names and "etc/.wh.ssl" in names
    assert not any(n.startswith("etc/ssl/") for n in names)  # no whiteouts below it
    assert "bin/rel-link" not in names and "ünï" not in names  # unchanged: left out
    assert "bin/tool" in names
    apply_layer(io.BytesIO(data), str(target), chown=CHOWN)
    assert tree(target, owners=CHOWN) == tree(upper, owners=CHOWN)


def test_native_diff_of_identical_trees_is_empty(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    _populate(lower)
    upper = tmp_path / "upper"
    _copy(lower, upper)
    out = io.BytesIO()
    write_native_diff(out, str(lower), str(upper))
    assert out.getvalue() == bytes(1024)


def test_native_diff_from_empty_lower_is_the_whole_tree(tmp_path: Path) -> None:
    lower, upper, target = tmp_path / "lower", tmp_path / "upper", tmp_path / "target"
    for d in (lower, upper, target):
        d.mkdir()
    _populate(upper)
    out = io.BytesIO()
    write_native_diff(out, str(lower), str(upper))
    apply_layer(io.BytesIO(out.getvalue()), str(target), chown=CHOWN)
    assert tree(target, owners=CHOWN) == tree(upper, owners=CHOWN)


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, (1 << 20) + 7])
def test_file_sizes_round_trip(size: int, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    payload = os.urandom(size)
    (src / "f").write_bytes(payload)
    apply_layer(io.BytesIO(_tar_of(src)), str(dst), chown=CHOWN)
    assert (dst / "f").read_bytes() == payload
    assert stat.S_ISREG(os.lstat(dst / "f").st_mode)
