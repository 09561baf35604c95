from __future__ import annotations

import os
from pathlib import Path

import pytest

from matou.errors import SystemError_
from matou.linux import libc
from matou.linux.mount import parse_options, secure_join


def test_parse_options() -> None:
    o = parse_options(["rbind", "ro", "nosuid", "rslave", "size=1m", "mode=755"])
    assert o.is_bind
    assert o.flags & libc.MS_REC and o.flags & libc.MS_RDONLY and o.flags & libc.MS_NOSUID
    assert o.propagation == (libc.MS_SLAVE | libc.MS_REC,)
    assert o.data == "size=1m,mode=755"
    assert not parse_options(["ro", "rw"]).flags & libc.MS_RDONLY


def test_secure_join_keeps_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "abs")
    os.symlink("../../../..", root / "etc/up")
    os.symlink("/etc", root / "etclink")
    r = str(root)
    assert secure_join(r, "/../../etc/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "abs/etc/x") == f"{r}/etc/x"
    assert secure_join(r, "etc/up/tmp") == f"{r}/tmp"
    assert secure_join(r, "/etclink/new/deeper") == f"{r}/etc/new/deeper"
    assert secure_join(r, "missing/../etc") == f"{r}/etc"


def test_secure_join_loop(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(SystemError_, match="ELOOP"):
        secure_join(str(tmp_path), "a/x")
