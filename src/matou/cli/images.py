"""`matou-images`: the image store on its own, until matoud serves it over the Engine API.

    matou-images [--root /var/lib/matou] [--snapshotter overlayfs|native] COMMAND
      ls | inspect NAME | history NAME | tag NAME REF | rm [-f] NAME… | prune [-a] | gc
      load [-i FILE] | save [-o FILE] NAME… | import FILE|- [REF] [-c CHANGE]… [-m MSG]
      load-layout DIR [--tag REF] | save-layout DIR NAME… | busybox [REF] | debian [REF]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import BinaryIO

from matou.errors import MatouError
from matou.images.setup import DEFAULT_ROOT, open_store


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="matou-images", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--snapshotter", default="auto", choices=["auto", "overlayfs", "native"])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ls")
    for name in ("inspect", "history"):
        sub.add_parser(name).add_argument("name")
    c = sub.add_parser("tag")
    c.add_argument("name")
    c.add_argument("ref")
    c = sub.add_parser("rm")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("names", nargs="+")
    sub.add_parser("prune").add_argument("-a", "--all", action="store_true")
    sub.add_parser("gc")
    sub.add_parser("load").add_argument("-i", "--input", default="-")
    c = sub.add_parser("save")
    c.add_argument("-o", "--output", default="-")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("import")
    c.add_argument("file")
    c.add_argument("ref", nargs="?")
    c.add_argument("-c", "--change", action="append", default=[])
    c.add_argument("-m", "--message", default="")
    c = sub.add_parser("load-layout")
    c.add_argument("dir")
    c.add_argument("--tag")
    c = sub.add_parser("save-layout")
    c.add_argument("dir")
    c.add_argument("names", nargs="+")
    sub.add_parser("busybox").add_argument("ref", nargs="?", default="busybox:latest")
    c = sub.add_parser("debian")
    c.add_argument("ref", nargs="?", default="debian:bookworm")
    c.add_argument("--suite", default="bookworm")
    a = p.parse_args(argv)
    try:
        return _run(a)
    except MatouError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


def _open(path: str, mode: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer if "r" in mode else sys.stdout.buffer
    return open(path, mode)  # type: ignore[return-value]


def _run(a: argparse.Namespace) -> int:
    from matou.images import create, formats
    from matou.oci import reference

    store = open_store(a.root, a.snapshotter)
    if a.cmd == "ls":
        print(f"{'REPOSITORY':<40}{'TAG':<20}{'IMAGE ID':<16}SIZE")
        for img in store.images():
            for t in img.tags or ("<none>:<none>",):
                if t == "<none>:<none>":
                    repo, tag = "<none>", "<none>"
                else:
                    ref = reference.parse(t)
                    repo, tag = ref.familiar_name, ref.tag or "<none>"
                print(f"{repo:<40}{tag:<20}{img.id.hex[:12]:<16}{_human(img.size)}")
    elif a.cmd == "inspect":
        img = store.get(a.name)
        print(json.dumps({"Id": str(img.id), "RepoTags": [reference.parse(t).familiar()
                                                           for t in img.tags],
                          "Parent": str(img.parent or ""), "Size": img.size,
                          "Config": img.config.config, "Os": img.config.os,
                          "Architecture": img.config.architecture,
                          "RootFS": {"Type": "layers",
                                     "Layers": [str(d) for d in img.config.rootfs_diff_ids]}},
                         indent=2))
    elif a.cmd == "history":
        for h in reversed(store.history(a.name)):
            print(f"{h.get('created', '')[:19]:<22}{h.get('created_by', '')[:60]:<62}"
                  f"{h.get('comment', '')}")
    elif a.cmd == "tag":
        store.tag(a.name, a.ref)
    elif a.cmd == "rm":
        for name in a.names:
            for item in store.delete(name, force=a.force):
                for k, v in item.items():
                    print(f"{k}: {v}")
    elif a.cmd == "prune":
        for i in store.prune(dangling_only=not a.all):
            print(f"deleted: {i}")
    elif a.cmd == "gc":
        blobs, snaps = store.gc()
        print(f"removed {len(blobs)} blobs, {len(snaps)} snapshots")
    elif a.cmd == "load":
        with _open(a.input, "rb") as f:
            for loaded in formats.load_archive(store, f):
                for t in loaded.tags:
                    print(f"Loaded image: {t}")
                if not loaded.tags:
                    print(f"Loaded image ID: {loaded.id}")
    elif a.cmd == "save":
        out = _open(a.output, "wb")
        formats.save_archive(store, a.names, out)
        out.flush()
    elif a.cmd == "import":
        with _open(a.file, "rb") as f:
            img = create.import_rootfs(store, f, a.change, [a.ref] if a.ref else [],
                                       a.message, a.file)
        print(img.id)
    elif a.cmd == "load-layout":
        for loaded in formats.load_layout(store, a.dir, a.tag):
            print(f"Loaded image: {', '.join(loaded.tags) or loaded.id}")
    elif a.cmd == "save-layout":
        formats.save_layout(store, a.names, a.dir)
    elif a.cmd == "busybox":
        print(create.build_busybox(store, [a.ref]).id)
    elif a.cmd == "debian":
        print(create.build_debian(store, a.suite, [a.ref]).id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
