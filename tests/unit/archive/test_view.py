from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from matou.archive.view import BindMount, View
from matou.errors import NotFound, SystemError_


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/hostname").write_text("container\n")
    (r / "tmp").mkdir()
    return r


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the root, standing for the host: nothing may reach it."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_text("host\n")
    return h


def read(node_proc: str) -> str:
    with open(node_proc) as f:
        return f.read()


def test_symlink_to_slash_stays_in_the_root(root: Path) -> None:
    (root / "x").symlink_to("/")
    with View(str(root)) as v, v.lookup("/x/etc/hostname", follow=True) as n:
        assert n.path == "/etc/hostname" and read(n.proc()) == "container\n"


def test_absolute_host_path_in_a_symlink_is_looked_up_in_the_root(root: Path,
                                                                   host: Path) -> None:
    (root / "m").symlink_to(host)
    (root / "r").symlink_to("../../../../../../../" + str(host).lstrip("/"))
    with View(str(root)) as v:
        for p in ("/m/secret", "/r/secret", f"/x/{host}/secret", f"/../../{host}/secret"):
            with pytest.raises(NotFound):
                v.lookup(p, follow=True)
        assert v.resolve("/m/secret") == f"{host}/secret"  # as a path in the container


def test_dotdot_stops_at_the_root(root: Path) -> None:
    (root / "up").symlink_to("../../../..")
    with View(str(root)) as v:
        with v.lookup("/../../etc/../../etc/hostname", follow=True) as n:
            assert n.path == "/etc/hostname"
        with v.lookup("/up", follow=True) as n:
            assert n.path == "/" and n.is_dir
        assert v.resolve("/up/etc") == "/etc"


def test_last_symlink_followed_only_when_asked(root: Path) -> None:
    (root / "l").symlink_to("etc")
    with View(str(root)) as v:
        with v.lookup("/l", follow=False) as n:
            assert not n.is_dir and os.readlink("", dir_fd=n.fd) == "etc"
        with v.lookup("/l", follow=True) as n:
            assert n.is_dir and n.path == "/etc"
        # a trailing slash or /. always follows
        with v.lookup("/l/", follow=False) as n:
            assert n.path == "/etc"


def test_symlink_loops_and_non_directories(root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with View(str(root)) as v:
        with pytest.raises(SystemError_) as e:
            v.lookup("/a", follow=True)
        assert e.value.errno == errno.ELOOP
        with pytest.raises(SystemError_) as e:
            v.lookup("/etc/hostname/x", follow=True)
        assert e.value.errno == errno.ENOTDIR
        with pytest.raises(SystemError_) as e:
            v.resolve("/a/x")
        assert e.value.errno == errno.ELOOP


def test_dangling_link_target_is_kept_literally(root: Path) -> None:
    (root / "d").symlink_to("/nowhere/x/../y")
    with View(str(root)) as v:
        assert v.resolve("/d") == "/nowhere/y"
        assert v.resolve("/etc/missing/z") == "/etc/missing/z"


def test_mounts_replace_their_destination(root: Path, host: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "f").write_text("volume\n")
    (vol / "sub/back").symlink_to("/etc")  # absolute: the container's /etc, not the host's
    (root / "data").mkdir()
    (root / "data/hidden").write_text("under the mount\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 x\n")
    mounts = [BindMount("/data", str(vol), True), BindMount("/etc/hosts", str(hosts), False)]
    with View(str(root), mounts, root_writable=False) as v:
        with v.lookup("/data/f", follow=True) as n:
            assert read(n.proc()) == "volume\n" and n.mount == mounts[0]
            assert v.writable(n)
        with pytest.raises(NotFound):
            v.lookup("/data/hidden", follow=True)
        with v.lookup("/data/sub/back/hostname", follow=True) as n:
            assert read(n.proc()) == "container\n" and n.mount is None
            assert not v.writable(n)
        with v.lookup("/data/../etc/hostname", follow=True) as n:
            assert n.path == "/etc/hostname"
        with v.lookup("/etc/hosts", follow=False) as n:
            assert read(n.proc()) == "127.0.0.1 x\n" and n.is_mount_root
            assert not v.writable(n)
        with v.lookup("/data", follow=False) as n:
            assert n.is_dir and n.is_mount_root
        assert sorted(v.mount_children("/etc")) == ["hosts"]
        assert v.mount_children("/") == ["data"]


def test_mount_destination_resolved_through_the_roots_symlinks(root: Path,
                                                              tmp_path: Path) -> None:
    (root / "run").mkdir()
    (root / "var").mkdir()
    (root / "var/run").symlink_to("/run")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "sock").write_text("s")
    with View(str(root), [BindMount("/var/run/x", str(vol), True)]) as v:
        assert list(v.mounts) == ["/run/x"]
        with v.lookup("/var/run/x/sock", follow=True) as n:
            assert n.path == "/run/x/sock"


def test_make_mount_points(root: Path, host: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    f = tmp_path / "file"
    f.write_text("")
    (root / "blocked").symlink_to(host)
    mounts = [BindMount("/srv/a/data", str(vol), True), BindMount("/etc/new", str(f), True),
              BindMount("/blocked/sub", str(vol), True)]
    with View(str(root), mounts) as v:
        v.make_mount_points()
    assert (root / "srv/a/data").is_dir() and (root / "etc/new").is_file()
    assert os.listdir(host) == ["secret"]  # a symlink on the way is not followed


def test_root_lookup_hands_out_its_own_fd(root: Path) -> None:
    v = View(str(root))
    n = v.lookup("/", follow=True)
    n.close()
    with v.lookup("/etc", follow=True) as m:  # the view's own fd still works
        assert m.is_dir
    v.close()


def test_innermost_mount_wins_whatever_the_order(root: Path, tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    (outer / "sub").mkdir(parents=True)
    (outer / "sub/x").write_text("outer\n")
    inner.mkdir()
    (inner / "x").write_text("inner\n")
    for mounts in ([BindMount("/data/sub", str(inner), False), BindMount("/data", str(outer),
                                                                        True)],
                   [BindMount("/data", str(outer), True), BindMount("/data/sub", str(inner),
                                                                    False)]):
        with View(str(root), mounts) as v, v.lookup("/data/sub/x", follow=True) as n:
            assert read(n.proc()) == "inner\n" and not v.writable(n)
