"""New images from files: `docker import` (a rootfs tarball as a one-layer image, with
`--change`), `docker commit` (a container's upper layer on top of its image), and the
offline busybox image the tests and demos use.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
import uuid
from collections.abc import Sequence
from typing import Any, BinaryIO

from matou.archive.apply import apply_layer
from matou.archive.diff import write_native_diff, write_overlay_diff
from matou.errors import InvalidArgument
from matou.images.store import (
    DEFAULT_MAX_LAYER,
    EXTRACT_PREFIX,
    LAYER_PREFIX,
    Image,
    ImageStore,
    LayerSource,
    layer_media_type,
    make_manifest,
)
from matou.oci import image as oci
from matou.oci.digest import Digest
from matou.oci.timestamps import format as now

_CHANGE_KEYS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
                "WORKDIR", "STOPSIGNAL", "HEALTHCHECK")


def _json_or_shell(rest: str, shell: bool) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest] if shell else shlex.split(rest)


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Dockerfile instructions as `docker import/commit --change` takes them."""
    c = dict(config)
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        key = word.upper()
        if key not in _CHANGE_KEYS:
            raise InvalidArgument(f"{word} is not a valid change command")
        rest = rest.strip()
        if key == "CMD":
            c["Cmd"] = _json_or_shell(rest, shell=True)
        elif key == "ENTRYPOINT":
            c["Entrypoint"] = _json_or_shell(rest, shell=True)
        elif key == "ENV":
            env = [e for e in c.get("Env") or []]
            pairs = _pairs(rest, "ENV")
            for k, v in pairs:
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            c["Env"] = env
        elif key == "LABEL":
            labels = dict(c.get("Labels") or {})
            labels.update(dict(_pairs(rest, "LABEL")))
            c["Labels"] = labels
        elif key == "EXPOSE":
            ports = dict(c.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            c["ExposedPorts"] = ports
        elif key == "VOLUME":
            vols = dict(c.get("Volumes") or {})
            for v in _json_or_shell(rest, shell=False):
                vols[v] = {}
            c["Volumes"] = vols
        elif key == "ONBUILD":
            c["OnBuild"] = [*(c.get("OnBuild") or []), rest]
        elif key == "USER":
            c["User"] = rest
        elif key == "WORKDIR":
            c["WorkingDir"] = rest
        elif key == "STOPSIGNAL":
            c["StopSignal"] = rest
        elif key == "HEALTHCHECK":
            raise InvalidArgument("HEALTHCHECK is not supported as a change yet")
    return c


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if len(words) >= 2 and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # the old `ENV key value` form
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"{what} needs key=value, got {w!r}")
        out.append((k, v))
    return out


def _platform(machine: str | None = None) -> tuple[str, str]:
    p = oci.default_platform(machine or os.uname().machine)
    return p.os, p.architecture


def import_rootfs(store: ImageStore, stream: BinaryIO, changes: Sequence[str] = (),
                  tags: Sequence[str] = (), message: str = "", source: str = "-",
                  ) -> Image:
    """`docker import`: the tarball (plain, gzip or zstd) becomes the only layer."""
    blob, size = _ingest(store, stream)
    key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}"
    store.snapshots.prepare(key, None)
    try:
        with store.content.open(blob) as f:
            result = apply_layer(f, store.snapshots.fs_dir(key), max_size=DEFAULT_MAX_LAYER,
                                 whiteout_mode=store.snapshots.whiteout_mode)
        diff_id = Digest.parse(result.diff_id)
        name = LAYER_PREFIX + diff_id.hex  # one layer: its chain ID is its diff ID
        if store.snapshots.exists(name):
            store.snapshots.remove(key)
        else:
            store.snapshots.commit(name, key)
    except BaseException:
        if store.snapshots.exists(key):
            store.snapshots.remove(key)
        raise
    os_, arch = _platform()
    created = now()
    config = {
        "architecture": arch, "os": os_, "created": created,
        "config": apply_changes({}, changes),
        "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
        "history": [{"created": created, "created_by": "",
                     "comment": message or f"Imported from {source}"}],
    }
    config_bytes = oci.config_to_json(config)
    layer = oci.descriptor(layer_media_type(store.content, blob), blob, size)
    return store.add(config_bytes, [LayerSource(blob, diff_id)],
                     make_manifest(config_bytes, [layer]), tags=tags)


def commit_snapshot(store: ImageStore, base: Image | None, key: str,
                    changes: Sequence[str] = (), tags: Sequence[str] = (),
                    author: str = "", message: str = "", container: str = "",
                    container_config: dict[str, Any] | None = None) -> Image:
    """`docker commit`: the active snapshot ``key``'s changes as a new top layer."""
    with store.content.writer() as w:
        sink = _WriterFile(w)
        if store.snapshots.kind == "overlayfs":
            write_overlay_diff(sink, store.snapshots.fs_dir(key))  # type: ignore[arg-type]
        else:
            parent = store.snapshots.stat(key).parent
            lower = store.snapshots.fs_dir(parent) if parent else _empty_dir(store)
            write_native_diff(sink, lower, store.snapshots.fs_dir(key))  # type: ignore[arg-type]
        size = w.hasher.size
        diff_id = w.commit()  # an uncompressed layer: its blob digest is its diff ID
    base_raw: dict[str, Any] = dict(base.config.raw) if base else {
        "architecture": _platform()[1], "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    created = now()
    cfg = apply_changes((container_config or base_raw.get("config") or {}), changes)
    raw = dict(base_raw)
    raw.update({
        "created": created, "config": cfg,
        "rootfs": {"type": "layers",
                   "diff_ids": [*base_raw["rootfs"]["diff_ids"], str(diff_id)]},
        "history": [*(base_raw.get("history") or []),
                    {"created": created, "created_by": "", "comment": message}
                    | ({"author": author} if author else {})],
    })
    if author:
        raw["author"] = author
    if container:
        raw["container"] = container
    config_bytes = oci.config_to_json(raw)
    layers = []
    descs = []
    stored = store.manifest(base) if base else None
    if base is not None:
        for i, d in enumerate(base.config.rootfs_diff_ids):
            blob = stored.layers[i] if stored else oci.descriptor(oci.OCI_LAYER, d, 0)
            layers.append(LayerSource(blob.digest, d))
            descs.append(blob)
    layers.append(LayerSource(diff_id, diff_id))
    descs.append(oci.descriptor(oci.OCI_LAYER, diff_id, size))
    return store.add(config_bytes, layers, make_manifest(config_bytes, descs),
                     parent=base.id if base else None, tags=tags)


class _WriterFile(io.RawIOBase):
    """A content Writer seen as a binary file, for tarfile."""

    def __init__(self, w: Any) -> None:
        self.w = w

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.w.write(bytes(b))
        return len(b)


def _empty_dir(store: ImageStore) -> str:
    d = os.path.join(store.root, "empty")
    os.makedirs(d, exist_ok=True)
    return d


def _ingest(store: ImageStore, stream: BinaryIO) -> tuple[Digest, int]:
    with store.content.writer() as w:
        w.copy_from(stream)
        size = w.hasher.size
        return w.commit(), size


def busybox_rootfs_tar(busybox: str = "/bin/busybox") -> bytes:
    """A busybox root filesystem as an uncompressed tar, built from Debian's
    busybox-static with its applet links — no network needed."""
    import subprocess

    if not os.path.isfile(busybox):
        raise InvalidArgument(f"{busybox} not found: install busybox-static")
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    buf = io.BytesIO()
    mtime = int(os.stat(busybox).st_mtime)

    def entry(name: str, kind: bytes, mode: int, **kw: Any) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = mtime
        for k, v in kw.items():
            setattr(info, k, v)
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr",
                  "usr/bin", "usr/sbin", "var", "var/spool", "var/www"):
            t.addfile(entry(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        with open(busybox, "rb") as f:
            data = f.read()
        t.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, size=len(data)), io.BytesIO(data))
        seen = {"bin/busybox"}
        for path in applets:
            name = path.lstrip("/")
            if name in seen:
                continue
            seen.add(name)
            t.addfile(entry(name, tarfile.LNKTYPE, 0o755, linkname="bin/busybox"))
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                            "nobody:x:65534:65534:nobody:/home:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            raw = text.encode()
            t.addfile(entry(name, tarfile.REGTYPE, 0o644, size=len(raw)), io.BytesIO(raw))
    return buf.getvalue()


def build_busybox(store: ImageStore, tags: Sequence[str] = ("busybox:latest",)) -> Image:
    """The `busybox` image (CMD ["sh"]) from Debian's busybox-static."""
    return import_rootfs(store, io.BytesIO(busybox_rootfs_tar()),
                         changes=['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:'
                                  '/usr/bin:/sbin:/bin', 'CMD ["sh"]'],
                         tags=tags, message="busybox from Debian's busybox-static")


def apt_mirror() -> str:
    """The first Debian mirror this machine's apt uses (deb822 or one-line format)."""
    candidates = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        candidates += [os.path.join(d, n) for n in sorted(os.listdir(d))
                       if n.endswith((".sources", ".list"))]
    for path in candidates:
        try:
            with open(path) as f:
                for line in f:
                    words = line.split()
                    if words[:1] == ["URIs:"] and "security" not in words[1]:
                        return words[1]
                    if words[:1] == ["deb"]:
                        url = next((w for w in words[1:] if "://" in w), "")
                        if url and "security" not in url:
                            return url
        except OSError:
            continue
    raise InvalidArgument("no Debian mirror found in the apt sources")


def build_debian(store: ImageStore, suite: str = "bookworm",
                 tags: Sequence[str] = ("debian:bookworm",)) -> Image:
    """A minimal Debian image made by debootstrap from this machine's apt mirror."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(dir=store.root) as work:
        target = os.path.join(work, "rootfs")
        subprocess.run(["debootstrap", "--variant=minbase", suite, target, apt_mirror()],
                       check=True, stdout=subprocess.DEVNULL)
        # as the official images: no downloaded packages or package lists
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            base = os.path.join(target, d)
            for name in os.listdir(base):
                path = os.path.join(base, name)
                if os.path.isfile(path) and name != "lock":
                    os.unlink(path)
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", target, "-cf", "-",
                                "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            return import_rootfs(store, tar.stdout,  # type: ignore[arg-type]
                                 changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                          "/usr/bin:/sbin:/bin", 'CMD ["bash"]'],
                                 tags=tags, message=f"debootstrap {suite}")
        finally:
            tar.wait()


def export_snapshot(store: ImageStore, key: str, out: BinaryIO) -> None:
    """`docker export`: the whole filesystem a snapshot shows, as one tar stream.

    An overlay snapshot is seen through a private read-only overlay whose lower dirs are
    its own upper dir and its ancestors' (a live container's mount is left alone)."""
    import tempfile

    from matou.archive.diff import write_tar
    from matou.linux import libc

    if store.snapshots.kind != "overlayfs":
        write_tar(out, store.snapshots.fs_dir(key))
        return
    dirs = [store.snapshots.fs_dir(i.name) for i in store.snapshots.chain(key)]
    with tempfile.TemporaryDirectory(dir=store.root) as target:
        if len(dirs) == 1:
            libc.mount(dirs[0], target, None, libc.MS_BIND | libc.MS_REC)
            libc.mount(None, target, None,
                       libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT | libc.MS_RDONLY)
        else:
            libc.mount("overlay", target, "overlay", libc.MS_RDONLY,
                       "lowerdir=" + ":".join(dirs))
        try:
            write_tar(out, target)
        finally:
            libc.umount2(target, libc.MNT_DETACH)
