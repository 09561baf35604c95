from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from matou.archive.view import BindMount, View
from matou.engine.archive import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_SOCKET,
    MODE_STICKY,
    MODE_SYMLINK,
    PathStat,
    absolute,
    archive_top,
    base_name,
    container_mounts,
    container_owner,
    follows_last,
    go_file_mode,
    go_time,
    mounted,
)
from matou.engine.containers import Container
from matou.errors import InvalidArgument


@pytest.mark.parametrize("st_mode, go", [
    (stat.S_IFDIR | 0o755, 2147484141),  # what dockerd sends for a plain directory
    (stat.S_IFREG | 0o644, 420),
    (stat.S_IFLNK | 0o777, 134218239),
    (stat.S_IFREG | 0o4755, MODE_SETUID | 0o755),
    (stat.S_IFREG | 0o2711, MODE_SETGID | 0o711),
    (stat.S_IFDIR | 0o1777, MODE_DIR | MODE_STICKY | 0o777),
    (stat.S_IFCHR | 0o666, MODE_DEVICE | MODE_CHAR_DEVICE | 0o666),
    (stat.S_IFBLK | 0o660, MODE_DEVICE | 0o660),
    (stat.S_IFIFO | 0o600, MODE_NAMED_PIPE | 0o600),
    (stat.S_IFSOCK | 0o755, MODE_SOCKET | 0o755),
])
def test_go_file_mode(st_mode: int, go: int) -> None:
    assert go_file_mode(st_mode) == go
    assert go == 0 or (go & MODE_SYMLINK != 0) == stat.S_ISLNK(st_mode)


def test_go_time() -> None:
    assert go_time(0) == "1970-01-01T00:00:00Z"
    assert go_time(1_500_000_000_500_000_000) == "2017-07-14T02:40:00.5Z"
    assert go_time(1_600_000_000_123_456_789) == "2020-09-13T12:26:40.123456789Z"


@pytest.mark.parametrize("path, cleaned", [
    ("etc", "/etc"),
    ("/etc/", "/etc/"),
    ("/etc/.", "/etc/."),
    ("/etc/./", "/etc/./"),
    (".", "/."),
    ("/", "/"),
    ("/.", "/."),
    ("../../etc/passwd", "/etc/passwd"),
    ("/a/b/../c", "/a/c"),
    ("//a//b", "/a/b"),
    ("/etc/..", "/"),
    ("/etc/../", "/"),
])
def test_absolute_keeps_trailing_slash_and_dot(path: str, cleaned: str) -> None:
    assert absolute(path) == cleaned


@pytest.mark.parametrize("path, name, top, follow", [
    ("/etc", "etc", "etc", False),
    ("/etc/", "etc", "etc", True),
    ("/etc/.", ".", ".", True),
    ("/", "/", "", True),
    ("/.", ".", ".", True),
    ("/etc/passwd", "passwd", "passwd", False),
])
def test_stat_name_and_archive_top(path: str, name: str, top: str, follow: bool) -> None:
    assert base_name(path) == name
    assert archive_top(name) == top
    assert follows_last(path) is follow


def test_base_name_like_go() -> None:
    assert base_name("") == "."
    assert base_name("///") == "/"
    assert base_name("a/b//") == "b"


def test_path_stat_json_in_dockers_field_order() -> None:
    st = PathStat("etc", 4096, 2147484141, "2020-09-13T12:26:40Z", "")
    assert list(st.to_json()) == ["name", "size", "mode", "mtime", "linkTarget"]


def _container(tmp_path: Path, **extra: Any) -> Container:
    hosts = tmp_path / "hosts"
    hosts.write_text("h")
    record: dict[str, Any] = {
        "Id": "c" * 64, "Name": "/c", "Config": {}, "HostConfig": {},
        "HostsPath": str(hosts), "HostnamePath": str(tmp_path / "not-yet"),
        "ResolvConfPath": str(tmp_path / "resolv"),
        "Mounts": [{"Type": "volume", "Name": "v", "Source": "/var/lib/v/_data",
                    "Destination": "/data", "RW": True},
                   {"Type": "bind", "Source": "/srv", "Destination": "/etc/resolv.conf",
                    "RW": False}],
    }
    record.update(extra)
    return Container(record)


def test_container_mounts(tmp_path: Path) -> None:
    (tmp_path / "resolv").write_text("")
    mounts = container_mounts(_container(tmp_path))
    assert mounts == [BindMount("/etc/hosts", str(tmp_path / "hosts"), True),
                      BindMount("/data", "/var/lib/v/_data", True),
                      BindMount("/etc/resolv.conf", "/srv", False)]
    ro = container_mounts(_container(tmp_path, HostConfig={"ReadonlyRootfs": True}))
    assert ro[0] == BindMount("/etc/hosts", str(tmp_path / "hosts"), False)


def test_container_owner_from_the_containers_own_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    with View(str(root)) as v:
        assert container_owner(v, "") is None
        assert container_owner(v, "app") == (1000, 1001)
        assert container_owner(v, "1000") == (1000, 1001)
        assert container_owner(v, "4242") == (4242, 0)
        assert container_owner(v, "app:staff") == (1000, 50)
        assert container_owner(v, "app:7") == (1000, 7)
        with pytest.raises(InvalidArgument, match="unable to find user ghost"):
            container_owner(v, "ghost")
        with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
            container_owner(v, "app:nogroup")


def test_container_owner_never_reads_the_hosts_passwd(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    host_passwd = tmp_path / "passwd"  # a host file the link names, absent in the container
    host_passwd.write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/passwd").symlink_to(host_passwd)
    with View(str(root)) as v, pytest.raises(InvalidArgument, match="unable to find user"):
        container_owner(v, "root")


def test_mounted(tmp_path: Path) -> None:
    assert mounted("/") and mounted("/proc")
    assert not mounted(str(tmp_path))
