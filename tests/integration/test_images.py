"""The image store end to end: busybox built offline, overlay snapshots shared by
containers, save/load and OCI layouts, commit, import, delete and gc, crash safety, and —
where the peers are on this machine — interop with dockerd, skopeo and umoci."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from matou.errors import FailedPrecondition, InvalidArgument, NotFound
from matou.images import create, formats
from matou.images.setup import open_store
from matou.images.store import ImageStore
from matou.linux import libc
from matou.oci import image as oci
from matou.oci.digest import sha256_bytes
from tests.integration.matoud import PEER_DOCKER, peer_docker_answers

FIXTURES = Path("/var/lib/matou-fixtures")


@pytest.fixture(params=["overlayfs", "native"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStore:
    return open_store(str(tmp_path / "root"), request.param)


@pytest.fixture
def overlay_store(tmp_path: Path) -> ImageStore:
    return open_store(str(tmp_path / "root"), "overlayfs")


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[str]]:
    targets: list[str] = []
    yield targets
    for t in reversed(targets):
        subprocess.run(["umount", "-l", t], capture_output=True)


def _mount(store: ImageStore, key: str, target: Path, mounts: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for m in store.snapshots.mounts(key):
        opts = [o for o in m.options if o not in ("rbind", "rw", "ro")]
        flags = 0
        if m.type == "bind":
            flags = libc.MS_BIND | libc.MS_REC
            libc.mount(m.source, str(target), None, flags)
            if "ro" in m.options:
                libc.mount(None, str(target), None, flags | libc.MS_REMOUNT | libc.MS_RDONLY)
        else:
            libc.mount(m.source, str(target), m.type, 0, ",".join(opts))
    mounts.append(str(target))


def test_busybox_image_and_shared_layers(overlay_store: ImageStore, tmp_path: Path,
                                         mounts: list[str]) -> None:
    s = overlay_store
    img = create.build_busybox(s)
    assert s.get("busybox").id == img.id == s.get(str(img.id)[7:19]).id
    assert img.config.config["Cmd"] == ["sh"]
    assert len(img.config.rootfs_diff_ids) == 1
    top = img.top_layer
    assert top is not None
    s.snapshots.prepare("c1", top)
    s.snapshots.prepare("c2", top)
    _mount(s, "c1", tmp_path / "m1", mounts)
    _mount(s, "c2", tmp_path / "m2", mounts)
    assert (tmp_path / "m1/bin/busybox").exists() and (tmp_path / "m2/bin/ls").exists()
    (tmp_path / "m1/written").write_bytes(b"x" * 100_000)
    os.unlink(tmp_path / "m1/bin/ls")
    # writes land in c1's upper dir only; the shared layer and c2 are untouched
    upper1 = Path(s.snapshots.fs_dir("c1"))
    assert (upper1 / "written").exists()
    assert not (Path(s.snapshots.fs_dir(top)) / "written").exists()
    assert (Path(s.snapshots.fs_dir(top)) / "bin/ls").exists()
    assert not (tmp_path / "m2/written").exists() and (tmp_path / "m2/bin/ls").exists()
    lower1 = s.snapshots.mounts("c1")[0].options[-1]
    assert lower1.startswith("lowerdir=") and lower1 == s.snapshots.mounts("c2")[0].options[-1]
    size1, _ = s.snapshots.usage("c1")
    size2, _ = s.snapshots.usage("c2")
    layer_size, _ = s.snapshots.usage(top)
    assert size2 < 16_384 and 100_000 <= size1 < 200_000 < layer_size


def test_save_load_round_trip(store: ImageStore, tmp_path: Path) -> None:
    img = create.build_busybox(store, ["busybox:latest", "example.com/bb:1"])
    out = io.BytesIO()
    formats.save_archive(store, ["busybox:latest"], out)
    other = open_store(str(tmp_path / "other"), store.snapshots.kind)
    loaded = formats.load_archive(other, io.BytesIO(out.getvalue()))
    assert [x.id for x in loaded] == [img.id]
    again = other.get("busybox:latest")
    assert again.config.rootfs_diff_ids == img.config.rootfs_diff_ids
    assert not other.exists_tag("example.com/bb:1")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        names = set(t.getnames())
        manifest = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    layout = tmp_path / "layout"
    formats.save_layout(store, ["busybox"], str(layout))
    third = open_store(str(tmp_path / "third"), store.snapshots.kind)
    assert [x.id for x in formats.load_layout(third, str(layout))] == [img.id]


def test_commit_and_import_with_changes(store: ImageStore, tmp_path: Path) -> None:
    base = create.build_busybox(store)
    assert base.top_layer
    store.snapshots.prepare("ctr", base.top_layer)
    if store.snapshots.kind == "overlayfs":
        # what overlayfs leaves in an upper dir for a new file and a deleted one
        upper = Path(store.snapshots.fs_dir("ctr"))
        (upper / "hello").write_text("hi\n")
        (upper / "bin").mkdir()
        os.mknod(upper / "bin/ls", 0o600 | 0o020000, os.makedev(0, 0))
    else:
        upper = Path(store.snapshots.fs_dir("ctr"))
        (upper / "hello").write_text("hi\n")
        os.unlink(upper / "bin/ls")
    img = create.commit_snapshot(store, base, "ctr", changes=["ENV A=1", "WORKDIR /srv"],
                                 tags=["committed:1"], author="me", message="msg")
    assert img.parent == base.id and len(img.config.rootfs_diff_ids) == 2
    assert img.config.config["WorkingDir"] == "/srv" and "A=1" in img.config.config["Env"]
    assert img.config.history[-1]["comment"] == "msg"
    # a fresh store that only gets the saved archive sees the change applied
    out = io.BytesIO()
    formats.save_archive(store, ["committed:1"], out)
    other = open_store(str(tmp_path / "other"), "native")
    formats.load_archive(other, io.BytesIO(out.getvalue()))
    top = other.get("committed:1").top_layer
    assert top is not None
    fs = Path(other.snapshots.fs_dir(top))
    assert (fs / "hello").read_text() == "hi\n"
    assert not (fs / "bin/ls").exists() and (fs / "bin/cat").exists()

    tar = create.busybox_rootfs_tar()
    imported = create.import_rootfs(store, io.BytesIO(tar), changes=[
        'CMD ["echo", "hi"]', "ENTRYPOINT /bin/sh", "EXPOSE 80", "LABEL a=b", "USER nobody",
        "VOLUME /data", "STOPSIGNAL SIGINT"], tags=["imported"])
    cfg = imported.config.config
    assert cfg["Cmd"] == ["echo", "hi"] and cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Labels"] == {"a": "b"}
    assert cfg["User"] == "nobody" and cfg["Volumes"] == {"/data": {}}
    assert imported.config.rootfs_diff_ids[0] == sha256_bytes(tar)
    with pytest.raises(InvalidArgument, match="FROB"):
        create.import_rootfs(store, io.BytesIO(tar), changes=["FROB x"])


def test_export_container_filesystem(store: ImageStore) -> None:
    base = create.build_busybox(store)
    assert base.top_layer
    store.snapshots.prepare("ctr", base.top_layer)
    upper = Path(store.snapshots.fs_dir("ctr"))
    (upper / "etc").mkdir(exist_ok=True)
    (upper / "etc/motd").write_text("exported\n")
    out = io.BytesIO()
    create.export_snapshot(store, "ctr", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        names = set(t.getnames())
        motd = t.extractfile("etc/motd")
        assert motd is not None and motd.read() == b"exported\n"
    assert {"bin/busybox", "bin/sh", "etc/passwd"} <= {n.lstrip("./") for n in names}
    with open("/proc/self/mountinfo") as f:
        assert store.root not in f.read(), "export left a mount behind"


def test_delete_refcount_prune_gc(overlay_store: ImageStore) -> None:
    s = overlay_store
    img = create.build_busybox(s, ["busybox:latest", "busybox:other"])
    assert s.delete("busybox:other") == [{"Untagged": "busybox:other"}]
    assert s.get("busybox").id == img.id
    s.tag("busybox", "two:1")
    with pytest.raises(FailedPrecondition, match="must be forced"):
        s.delete(str(img.id))
    assert s.delete("two:1") == [{"Untagged": "two:1"}]
    with pytest.raises(FailedPrecondition, match="being used"):
        s.delete(str(img.id), in_use={str(img.id)})
    s.tag("busybox", "two:1")
    out = s.delete(str(img.id), force=True)
    assert {"Deleted": str(img.id)} in out
    with pytest.raises(NotFound):
        s.get("busybox")
    assert list(s.content.walk()) == [] and s.snapshots.walk() == []
    dangling = create.build_busybox(s, [])
    assert s.prune() == [str(dangling.id)]
    assert list(s.content.walk()) == []


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _archive(config: dict[str, object], layers: list[bytes],
             manifest: object = None) -> bytes:
    cfg = json.dumps(config).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add("config.json", cfg)
        for i, layer in enumerate(layers):
            add(f"l{i}/layer.tar", layer)
        add("manifest.json", json.dumps(manifest if manifest is not None else [
            {"Config": "config.json", "RepoTags": ["hostile:1"],
             "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]).encode())
    return buf.getvalue()


def test_bad_archives_leave_the_store_clean(overlay_store: ImageStore) -> None:
    s = overlay_store
    layer = _layer_tar({"a": b"1"})
    wrong = {"architecture": "amd64", "os": "linux", "config": {},
             "rootfs": {"type": "layers", "diff_ids": [str(sha256_bytes(b"other"))]}}
    with pytest.raises(InvalidArgument, match="diff ID"):
        formats.load_archive(s, io.BytesIO(_archive(wrong, [layer])))
    with pytest.raises(InvalidArgument, match="leaves the archive"):
        formats.load_archive(s, io.BytesIO(_archive(wrong, [layer], [
            {"Config": "../../etc/passwd", "Layers": []}])))
    with pytest.raises(InvalidArgument):
        formats.load_archive(s, io.BytesIO(b"not a tar at all" * 100))
    assert s.images() == []
    s.gc()
    assert list(s.content.walk()) == [] and s.snapshots.walk() == []
    assert os.listdir(s.content.ingest_dir) == []


def test_hostile_oci_layout(overlay_store: ImageStore, tmp_path: Path) -> None:
    s = overlay_store
    create.build_busybox(s)
    good = tmp_path / "good"
    formats.save_layout(s, ["busybox"], str(good))
    # CVE-2021-41190: a document that is both a manifest and an index
    bad = tmp_path / "ambiguous"
    shutil.copytree(good, bad)
    index = json.loads((bad / "index.json").read_text())
    index["layers"] = []
    (bad / "index.json").write_text(json.dumps(index))
    fresh = open_store(str(tmp_path / "fresh"), "overlayfs")
    with pytest.raises(InvalidArgument):
        formats.load_layout(fresh, str(bad))
    # a layer blob whose bytes do not match its digest is refused and not stored
    tampered = tmp_path / "tampered"
    shutil.copytree(good, tampered)
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    m = json.loads((tampered / "blobs/sha256" / manifest_digest).read_text())
    layer_path = tampered / "blobs/sha256" / m["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer_path.read_bytes())
    data[1000] ^= 0xFF
    layer_path.chmod(0o644)
    layer_path.write_bytes(bytes(data))
    with pytest.raises(InvalidArgument, match="digest"):
        formats.load_layout(fresh, str(tampered))
    assert fresh.images() == [] and list(fresh.content.walk()) == []


def test_kill_during_load_leaves_no_half_image(tmp_path: Path) -> None:
    """kill -9 in the middle of a load: nothing is visible after, and the next start
    removes what was left; the same load then succeeds."""
    root = tmp_path / "root"
    big = os.urandom(64 << 20)
    layer = _layer_tar({"big": big, "small": b"s"})
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [str(sha256_bytes(layer))]}}
    archive = tmp_path / "a.tar"
    archive.write_bytes(_archive(config, [layer]))
    code = ("import sys; from matou.cli.images import main; "
            f"sys.exit(main(['--root', {str(root)!r}, '--snapshotter', 'overlayfs', "
            f"'load', '-i', {str(archive)!r}]))")
    for delay in (0.15, 0.4, 0.8):
        p = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        s = open_store(str(root), "overlayfs")  # start-up cleanup
        assert s.images() == [] or s.get("hostile:1").config.rootfs_diff_ids
        if not s.images():
            assert os.listdir(s.content.ingest_dir) == []
            s.gc()
            assert list(s.content.walk()) == [] and s.snapshots.walk() == []
        else:
            s.delete("hostile:1")
    s = open_store(str(root), "overlayfs")
    with open(archive, "rb") as f:
        formats.load_archive(s, f)
    assert s.get("hostile:1")


# -- interop with the real peers, where this machine has them ---------------------------

def _fixture(name: str) -> dict[str, object]:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"no {path} (made by the peer scripts in a session)")
    data: dict[str, object] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("name", ["busybox", "multi"])
def test_dockerd_save_archive_loads_with_same_ids(overlay_store: ImageStore, name: str,
                                                  tmp_path: Path, mounts: list[str]) -> None:
    meta = _fixture(f"{name}.json")
    with open(FIXTURES / f"{name}-docker-save.tar", "rb") as f:
        loaded = formats.load_archive(overlay_store, f)
    img = overlay_store.get(str(loaded[0].id))
    assert str(img.id) == meta["image_id"]
    assert [str(d) for d in img.config.rootfs_diff_ids] == meta["diff_ids"]
    if name == "multi":
        assert img.top_layer
        overlay_store.snapshots.view("v", img.top_layer)
        _mount(overlay_store, "v", tmp_path / "view", mounts)
        view = tmp_path / "view"
        assert (view / "b").exists() and not (view / "a").exists()
        assert not (view / "d").exists() and (view / "bin/sh").exists()


def test_matou_save_loads_into_dockerd(overlay_store: ImageStore, tmp_path: Path) -> None:
    meta = _fixture("multi.json")
    if not peer_docker_answers():
        pytest.skip("no peer dockerd answers on " + PEER_DOCKER)
    with open(FIXTURES / "multi-docker-save.tar", "rb") as f:
        formats.load_archive(overlay_store, f)
    overlay_store.tag(str(meta["image_id"]), "matou-roundtrip/multi:1")
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        formats.save_archive(overlay_store, ["matou-roundtrip/multi:1"], f)
    docker = ["docker", "-H", PEER_DOCKER]
    try:
        subprocess.run([*docker, "load", "-i", str(out)], check=True, capture_output=True)
        got = subprocess.run([*docker, "image", "inspect", "-f", "{{.Id}}",
                              "matou-roundtrip/multi:1"], check=True, capture_output=True,
                             text=True).stdout.strip()
        assert got == meta["image_id"]
    finally:
        subprocess.run([*docker, "rmi", "matou-roundtrip/multi:1"], capture_output=True)


@pytest.mark.parametrize("layout", ["busybox-oci-skopeo", "multi-oci-skopeo",
                                    "busybox-oci-umoci"])
def test_oci_layouts_from_skopeo_and_umoci(overlay_store: ImageStore, layout: str) -> None:
    meta = _fixture("layouts.json")
    path = FIXTURES / layout
    loaded = formats.load_layout(overlay_store, str(path), tag=f"fixture/{layout}:1")
    index = json.loads((path / "index.json").read_text())
    m = json.loads((path / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    assert str(loaded[0].id) == m["config"]["digest"]
    assert layout in json.dumps(meta)
    img = overlay_store.get(f"fixture/{layout}:1")
    cfg = oci.parse_config((path / "blobs/sha256" / m["config"]["digest"][7:]).read_bytes())
    assert img.config.rootfs_diff_ids == cfg.rootfs_diff_ids
