"""The hostile layer corpus: each crafted tar is refused (or contained) and nothing
outside the root changes: not the sentinel dir next to it, not the host's /etc."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from matou.archive.apply import LayerError, apply_layer
from tests.unit.archive.tars import M, make_tar

if os.geteuid() != 0:
    pytest.skip("integration tests need root", allow_module_level=True)


def _state(path: Path) -> dict[str, Any]:
    """Everything observable about a tree (and the tree's own inode)."""
    out: dict[str, Any] = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = os.lstat(p)
        rec: tuple[Any, ...] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size,
                                st.st_mtime_ns, st.st_ctime_ns)
        if p.is_symlink():
            rec += (os.readlink(p),)
        elif p.is_file():
            rec += (hashlib.sha256(p.read_bytes()).hexdigest(),)
        out[str(p)] = rec
    return out


@dataclass
class Scene:
    tmp: Path
    root: Path
    outside: Path
    host_name: str  # a name under /etc that must never appear

    def apply(self, data: bytes, **kw: Any) -> None:
        apply_layer(io.BytesIO(data), str(self.root), **kw)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "file").write_text("sentinel")
    (outside / "dir").mkdir()
    (outside / "dir/inner").write_text("inner")
    s = Scene(tmp_path, root, outside, f"matou-hostile-{uuid.uuid4().hex[:8]}")
    before = _state(outside)
    siblings = sorted(os.listdir(tmp_path))
    passwd = os.stat("/etc/passwd")
    yield s
    assert _state(outside) == before, "something outside the root changed"
    assert sorted(os.listdir(tmp_path)) == siblings
    assert not os.path.lexists(f"/etc/{s.host_name}")
    after = os.stat("/etc/passwd")
    assert (after.st_nlink, after.st_ctime_ns) == (passwd.st_nlink, passwd.st_ctime_ns)


def _refused(s: Scene, data: bytes, match: str, **kw: Any) -> None:
    with pytest.raises(LayerError, match=match):
        s.apply(data, **kw)


def test_dotdot(scene: Scene) -> None:
    _refused(scene, make_tar(M("../x", data=b"x")), r"`\.\./x`: `\.\.`")
    _refused(scene, make_tar(M("../outside/file", data=b"x")), r"`\.\.`")
    _refused(scene, make_tar(M("a/../../x", data=b"x")), r"`a/\.\./\.\./x`")
    _refused(scene, make_tar(M("ok", "dir"), M("ok/../../outside/file", data=b"x")), r"`\.\.`")


def test_absolute_names_land_inside_the_root(scene: Scene) -> None:
    scene.apply(make_tar(M(f"/etc/{scene.host_name}", data=b"contained"),
                         M("/abs", data=b"a")))
    assert (scene.root / "etc" / scene.host_name).read_bytes() == b"contained"
    assert (scene.root / "abs").read_bytes() == b"a"


def test_write_through_symlink_to_host_root(scene: Scene) -> None:
    _refused(scene, make_tar(M("a", "symlink", linkname="/"),
                             M(f"a/etc/{scene.host_name}", data=b"pwned")),
             r"`a/etc/.*`: parent `a` is a symlink")


def test_write_through_relative_symlink(scene: Scene) -> None:
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"), M("a/x", data=b"x")),
             "parent `a` is a symlink")
    _refused(scene, make_tar(M("a", "symlink", linkname="../../../../../../.."),
                             M(f"a/etc/{scene.host_name}", data=b"x")),
             "parent `a` is a symlink")
    # deeper: a real dir, then a symlink inside it
    _refused(scene, make_tar(M("d", "dir"), M("d/up", "symlink", linkname="../../outside"),
                             M("d/up/dir/inner", data=b"x")),
             "parent `d/up` is a symlink")
    # directories and devices cannot be made through it either
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"), M("a/newdir", "dir")),
             "symlink")
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"), M("a/p", "fifo")),
             "symlink")


def test_symlink_planted_by_a_lower_layer(scene: Scene) -> None:
    os.symlink("../outside", scene.root / "lower-link")
    _refused(scene, make_tar(M("lower-link/file", data=b"x")), "parent `lower-link`")
    _refused(scene, make_tar(M("lower-link/.wh.file")), "parent `lower-link`")


def test_entry_over_a_symlink_replaces_the_link(scene: Scene) -> None:
    scene.apply(make_tar(M("f", "symlink", linkname="../outside/file"),
                         M("f", data=b"replaced", mode=0o777, uid=1234),
                         M("d", "symlink", linkname="../outside/dir"),
                         M("d", "dir", mode=0o700),
                         M("d/inner", data=b"mine")))
    assert (scene.root / "f").read_bytes() == b"replaced"
    assert not (scene.root / "d").is_symlink()
    assert (scene.root / "d/inner").read_bytes() == b"mine"


def test_metadata_of_a_symlink_stays_on_the_link(scene: Scene) -> None:
    scene.apply(make_tar(M("l", "symlink", linkname="../outside/file", uid=4321, gid=4321,
                           mode=0o777, mtime=1)))
    st = os.lstat(scene.root / "l")
    assert (st.st_uid, st.st_gid, st.st_mtime) == (4321, 4321, 1)


def test_hardlink_to_host_file(scene: Scene) -> None:
    _refused(scene, make_tar(M("pw", "link", linkname="/etc/passwd")),
             "hard link target `/etc/passwd` does not exist")
    _refused(scene, make_tar(M("pw", "link", linkname="../outside/file")), r"`\.\.`")
    _refused(scene, make_tar(M("d", "dir"), M("d/pw", "link", linkname="d/../../outside/file")),
             r"`\.\.`")


def test_hardlink_through_symlinked_parent(scene: Scene) -> None:
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"),
                             M("h", "link", linkname="a/file")),
             "parent `a` is a symlink")
    _refused(scene, make_tar(M("a", "symlink", linkname="/etc"),
                             M("h", "link", linkname="a/passwd")),
             "parent `a` is a symlink")
    # the link itself placed through a symlinked parent
    _refused(scene, make_tar(M("f", data=b"x"), M("a", "symlink", linkname="../outside"),
                             M("a/h", "link", linkname="f")),
             "parent `a` is a symlink")


def test_hardlink_to_a_symlink_links_the_symlink(scene: Scene) -> None:
    scene.apply(make_tar(M("s", "symlink", linkname="/etc/passwd"),
                         M("h", "link", linkname="s")))
    assert os.readlink(scene.root / "h") == "/etc/passwd"
    assert os.lstat(scene.root / "h").st_ino == os.lstat(scene.root / "s").st_ino


def test_hardlink_over_a_symlink(scene: Scene) -> None:
    scene.apply(make_tar(M("f", data=b"mine"), M("a", "symlink", linkname="../outside/file"),
                         M("a", "link", linkname="f")))
    assert os.stat(scene.root / "a").st_ino == os.stat(scene.root / "f").st_ino


def test_whiteout_under_symlinked_dir(scene: Scene) -> None:
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"), M("a/.wh.file")),
             r"`a/\.wh\.file`: parent `a` is a symlink")
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"),
                             M("a/.wh..wh..opq")),
             "parent `a` is a symlink")
    _refused(scene, make_tar(M("a", "symlink", linkname="../outside"), M("a/.wh.file")),
             "symlink", whiteout_mode="overlay")


def test_whiteout_of_a_symlink_removes_only_the_link(scene: Scene) -> None:
    os.symlink("../outside", scene.root / "l")
    os.symlink("../outside/file", scene.root / "f")
    scene.apply(make_tar(M(".wh.l"), M(".wh.f")))
    assert os.listdir(scene.root) == []


def test_opaque_dir_does_not_follow_symlinks_inside(scene: Scene) -> None:
    (scene.root / "d").mkdir()
    os.symlink("../../outside", scene.root / "d/link")
    scene.apply(make_tar(M("d", "dir"), M("d/.wh..wh..opq")))
    assert os.listdir(scene.root / "d") == []


def test_whiteout_dotdot(scene: Scene) -> None:
    _refused(scene, make_tar(M("d", "dir"), M("d/.wh..")), "bad whiteout")
    _refused(scene, make_tar(M(".wh..")), "bad whiteout")


def test_symlink_loop(scene: Scene) -> None:
    _refused(scene, make_tar(M("l1", "symlink", linkname="l2"),
                             M("l2", "symlink", linkname="l1"),
                             M("l1/x", data=b"x")),
             "parent `l1` is a symlink")
    _refused(scene, make_tar(M("self", "symlink", linkname="self"),
                             M("h", "link", linkname="self/x")),
             "parent `self` is a symlink")


def test_devices_not_allowed(scene: Scene) -> None:
    _refused(scene, make_tar(M("mem", "chr", dev=(1, 1))), "`mem`: device nodes are not "
             "allowed", allow_devices=False)
    _refused(scene, make_tar(M("sda", "blk", dev=(8, 0))), "`sda`: device", allow_devices=False)
    assert not (scene.root / "mem").exists() and not (scene.root / "sda").exists()


def test_gzip_bomb(scene: Scene) -> None:
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as g:
        head = make_tar(M("bomb", data=b""))[:512]
        g.write(head)
        zeros = bytes(1 << 20)
        for _ in range(64):
            g.write(zeros)
    _refused(scene, bomb.getvalue(), "exceeds the limit", max_size=1 << 20)


def test_zero_sized_layer_bomb_in_a_member(scene: Scene) -> None:
    """A member claiming 64 MiB of data (zeros that compress to nothing)."""
    payload = io.BytesIO()
    with gzip.GzipFile(fileobj=payload, mode="wb", compresslevel=9) as g:
        g.write(make_tar(M("big", data=bytes(64 << 20))))
    _refused(scene, payload.getvalue(), "exceeds the limit", max_size=1 << 20)
