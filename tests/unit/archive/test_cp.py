from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from matou.archive.cp import ExtractOptions, extract, member_path, write_archive
from matou.archive.view import BindMount, View
from matou.errors import InvalidArgument, SystemError_
from tests.unit.archive.tars import MTIME, M, make_tar

ME = (os.getuid(), os.getgid())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/hostname").write_text("container\n")
    (r / "tmp").mkdir()
    return r


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    v = tmp_path / "vol"
    v.mkdir()
    (v / "in-volume").write_text("v\n")
    return v


def tar_of(view: View, path: str, top: str, *, follow: bool = False) -> list[tarfile.TarInfo]:
    buf = io.BytesIO()
    with view.lookup(path, follow=follow) as node:
        write_archive(buf, view, node, top)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        members = t.getmembers()
        for m in members:
            if m.isreg():
                f = t.extractfile(m)
                assert f is not None
                m.pax_headers = {**m.pax_headers, "data": f.read().decode()}
    return members


def untar(view: View, path: str, data: bytes, **kw: object) -> None:
    opts = ExtractOptions(owner=ME, **kw)  # type: ignore[arg-type]
    with view.lookup(path, follow=True) as node:
        extract(io.BytesIO(data), view, node, opts)


# -- out ------------------------------------------------------------------------------------

def test_directory_archive_names_and_kinds(root: Path, vol: Path) -> None:
    (root / "etc/sub").mkdir()
    (root / "etc/sub/f").write_bytes(b"x" * 1000)
    os.link(root / "etc/sub/f", root / "etc/hard")
    (root / "etc/link").symlink_to("/")
    os.mkfifo(root / "etc/fifo")
    with View(str(root), [BindMount("/etc/vol", str(vol), True)]) as v:
        members = tar_of(v, "/etc", "etc")
        names = [m.name for m in members]
        assert names == ["etc", "etc/fifo", "etc/hard", "etc/hostname", "etc/link",
                         "etc/sub", "etc/sub/f", "etc/vol", "etc/vol/in-volume"]
        kinds = {m.name: m.type for m in members}
        assert kinds["etc"] == tarfile.DIRTYPE and kinds["etc/link"] == tarfile.SYMTYPE
        assert kinds["etc/fifo"] == tarfile.FIFOTYPE
        by = {m.name: m for m in members}
        assert by["etc/hard"].isreg() and by["etc/sub/f"].islnk()
        assert by["etc/sub/f"].linkname == "etc/hard"
        assert by["etc/link"].linkname == "/" and by["etc/vol/in-volume"].pax_headers[
            "data"] == "v\n"
        assert all(m.uname == "" and m.gname == "" for m in members)
        # the contents of "/etc/." and of the root, as Docker names them (tarfile drops
        # a directory's trailing slash when it reads: "./" is ".", "/" is "")
        assert [m.name for m in tar_of(v, "/etc/.", ".", follow=True)][:2] == [".", "./fifo"]
        root_names = [m.name for m in tar_of(v, "/", "", follow=True)]
        assert root_names[:2] == ["", "/etc"] and "/etc/hostname" in root_names


def test_raw_member_names(root: Path) -> None:
    buf = io.BytesIO()
    with View(str(root)) as v, v.lookup("/etc", follow=True) as n:
        write_archive(buf, v, n, ".")
    raw = buf.getvalue()
    assert raw[:2] == b"./" and raw[2] == 0  # the directory's own member is "./"
    buf = io.BytesIO()
    with View(str(root)) as v, v.lookup("/", follow=True) as n:
        write_archive(buf, v, n, "")
    assert buf.getvalue()[:2] == b"/\0"


def test_file_and_symlink_archives_are_one_member(root: Path) -> None:
    (root / "l").symlink_to("etc/hostname")
    with View(str(root)) as v:
        [m] = tar_of(v, "/etc/hostname", "hostname")
        assert m.name == "hostname" and m.pax_headers["data"] == "container\n"
        [m] = tar_of(v, "/l", "l")
        assert m.issym() and m.linkname == "etc/hostname"


def test_symlinked_directory_is_not_descended(root: Path, tmp_path: Path) -> None:
    (root / "etc/host").symlink_to(tmp_path)  # a host path: a link, never a walk
    with View(str(root)) as v:
        names = [m.name for m in tar_of(v, "/etc", "etc")]
    assert names == ["etc", "etc/host", "etc/hostname"]


# -- in -------------------------------------------------------------------------------------

def test_extract_a_tree_with_metadata(root: Path) -> None:
    data = make_tar(M("d", "dir", mode=0o750), M("d/f", data=b"hi", mode=0o4755),
                    M("d/l", "symlink", linkname="f"), M("d/h", "link", linkname="d/f"),
                    M("d/p", "fifo", mode=0o640), M("./d/e/deep", data=b"z"))
    with View(str(root)) as v:
        untar(v, "/tmp", data)
    d = root / "tmp/d"
    assert stat.S_IMODE(d.stat().st_mode) == 0o750 and d.stat().st_mtime == MTIME
    assert (d / "f").read_bytes() == b"hi" and stat.S_IMODE((d / "f").stat().st_mode) == 0o4755
    assert (d / "f").stat().st_mtime == MTIME and (d / "f").stat().st_nlink == 2
    assert os.readlink(d / "l") == "f" and stat.S_ISFIFO((d / "p").lstat().st_mode)
    assert stat.S_IMODE((d / "e").stat().st_mode) == 0o755  # implied, as Docker makes them
    assert (d / "e/deep").read_bytes() == b"z"


@pytest.mark.parametrize("wrap", [lambda b: b, gzip.compress])
def test_extract_compressed_and_empty(root: Path, wrap: object) -> None:
    with View(str(root)) as v:
        untar(v, "/tmp", wrap(make_tar(M("a", data=b"1"))))  # type: ignore[operator]
        untar(v, "/tmp", b"")
    assert (root / "tmp/a").read_bytes() == b"1"


def test_existing_entries_are_replaced_or_merged(root: Path) -> None:
    (root / "tmp/dir").mkdir()
    (root / "tmp/dir/keep").write_text("k")
    (root / "tmp/file").write_text("old")
    (root / "tmp/was-link").symlink_to("/etc")
    with View(str(root)) as v:
        untar(v, "/tmp", make_tar(M("dir", "dir", mode=0o700), M("dir/new", data=b"n"),
                                  M("file", data=b"new"), M("was-link", "dir"),
                                  M("was-link/x", data=b"x"), M(".", "dir", mode=0o700)))
    assert (root / "tmp/dir/keep").exists() and (root / "tmp/dir/new").exists()
    assert stat.S_IMODE((root / "tmp/dir").stat().st_mode) == 0o700
    assert (root / "tmp/file").read_text() == "new"
    assert (root / "tmp/was-link").is_dir() and not (root / "tmp/was-link").is_symlink()
    assert not (root / "etc/x").exists()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) != 0o700  # "." leaves dest alone


def test_no_overwrite_dir_non_dir(root: Path) -> None:
    (root / "tmp/dir").mkdir()
    (root / "tmp/file").write_text("f")
    with View(str(root)) as v:
        with pytest.raises(InvalidArgument, match='cannot overwrite directory "/tmp/dir" '
                                                  'with non-directory "/tmp"'):
            untar(v, "/tmp", make_tar(M("dir", data=b"x")), no_overwrite_dir_non_dir=True)
        with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
            untar(v, "/tmp", make_tar(M("file", "dir")), no_overwrite_dir_non_dir=True)
    assert (root / "tmp/dir").is_dir() and (root / "tmp/file").is_file()


@pytest.mark.parametrize("members, message", [
    ([M("../escape", data=b"x")], "`..`"),
    ([M("a/../../escape", data=b"x")], "`..`"),
    ([M("lnk", "symlink", linkname="/"), M("lnk/etc/pwned", data=b"x")], "symlink"),
    ([M("lnk", "symlink", linkname="../.."), M("lnk/pwned", data=b"x")], "invalid symlink"),
    ([M("h", "link", linkname="../etc/hostname")], "`..`"),
    ([M("h", "link", linkname="/etc/hostname")], "does not exist"),
    ([M(".", data=b"x")], "not a directory"),
])
def test_hostile_archives_are_refused(root: Path, tmp_path: Path, members: list[M],
                                      message: str) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    with View(str(root)) as v, pytest.raises(InvalidArgument, match=message):
        untar(v, "/tmp", make_tar(*members))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (root / "escape").exists() and not (root / "etc/pwned").exists()
    assert (root / "etc/hostname").read_text() == "container\n"


def test_symlink_inside_the_root_is_fine_at_the_top(root: Path) -> None:
    # extracting into "/", nothing can climb higher: Docker accepts it, so do we
    with View(str(root)) as v:
        untar(v, "/", make_tar(M("up", "symlink", linkname="../../..")))
    assert os.readlink(root / "up") == "../../.."


def test_corrupt_archives(root: Path) -> None:
    good = make_tar(M("a", data=b"x" * 2000), M("b", data=b"y"))
    with View(str(root)) as v:
        with pytest.raises(InvalidArgument, match="truncated"):
            untar(v, "/tmp", good[:1024 + 512])
        with pytest.raises(InvalidArgument):
            untar(v, "/tmp", b"not a tar" * 100)


def test_parent_symlink_in_the_container_is_not_followed(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (root / "tmp/out").symlink_to(host)
    with View(str(root)) as v, pytest.raises(InvalidArgument, match="symlink"):
        untar(v, "/tmp", make_tar(M("out/pwned", data=b"x")))
    assert list(host.iterdir()) == []


def test_extract_through_mounts(root: Path, vol: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("h")
    (root / "data").mkdir()
    mounts = [BindMount("/data", str(vol), True), BindMount("/ro", str(ro), False),
              BindMount("/etc/hosts", str(hosts), True)]
    with View(str(root), mounts) as v:
        untar(v, "/", make_tar(M("data", "dir", mode=0o711), M("data/x", data=b"1"),
                               M("data/sub/y", data=b"2")))
        assert (vol / "x").read_bytes() == b"1" and (vol / "sub/y").read_bytes() == b"2"
        assert stat.S_IMODE(vol.stat().st_mode) == 0o711  # a dir over a mount merges
        assert not (root / "data/x").exists()
        with pytest.raises(SystemError_) as e:
            untar(v, "/", make_tar(M("ro/x", data=b"1")))
        assert e.value.errno == errno.EROFS and list(ro.iterdir()) == []
        with pytest.raises(SystemError_) as e:
            untar(v, "/etc", make_tar(M("hosts", data=b"replaced")))
        assert e.value.errno == errno.EBUSY and hosts.read_text() == "h"
        with pytest.raises(SystemError_) as e:  # would remove the mount point below it
            untar(v, "/", make_tar(M("etc", data=b"x")))
        assert e.value.errno == errno.EBUSY and (root / "etc/hostname").exists()


def test_read_only_root(root: Path) -> None:
    with View(str(root), root_writable=False) as v, pytest.raises(SystemError_) as e:
        untar(v, "/tmp", make_tar(M("x", data=b"1")))
    assert e.value.errno == errno.EROFS and not (root / "tmp/x").exists()


def test_owner_from_the_tar_or_forced(root: Path) -> None:
    data = make_tar(M("f", data=b"1", uid=ME[0], gid=ME[1]))
    with View(str(root)) as v, v.lookup("/tmp", follow=True) as n:
        extract(io.BytesIO(data), v, n, ExtractOptions())
    st = (root / "tmp/f").stat()
    assert (st.st_uid, st.st_gid) == ME


def test_member_path() -> None:
    assert member_path("/abs/./x/", "m") == "abs/x"
    assert member_path("./", "m") == ""
    for bad in ("..", "a/../b", "a\0b", "x" * 5000):
        with pytest.raises(InvalidArgument):
            member_path(bad, "m")
