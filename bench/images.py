#!/usr/bin/env python3
"""Unpacking a big image: matou against `tar -xzf` (the floor) and `docker load`.

    bench/images.py [-n 3] [--layout DIR] [--archive FILE] [--docker-host unix:///…]

The default inputs are the peer fixtures (bench/README: /var/lib/matou-fixtures, made by
shared/peers/build-test-images.sh and skopeo): the 5-layer, ~300 MB (~230 MB gzip) `big`
image as an OCI layout with gzip layers, and the same image as a `docker save` archive.
Each case starts from an empty store; medians of -n runs; page cache warm; no sync.

    tar -xzf x5           the gzip layers one after another into one directory (the floor)
    matou unpack          gzip blobs already in the content store → overlay snapshots
    matou load-layout     the OCI layout → content store → overlay snapshots
    matou load archive    the docker-save tar (uncompressed layers), as `docker load` gets it
    docker load           the same tar into the peer dockerd (then the image is removed)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from matou.images import formats
from matou.images.setup import open_store
from matou.images.store import LayerSource
from matou.oci import image as oci
from matou.oci.digest import Digest

FIXTURES = Path("/var/lib/matou-fixtures")


def _median(n: int, setup: Callable[[], object], run: Callable[[object], None]) -> float:
    times = []
    for _ in range(n):
        state = setup()
        t = time.perf_counter()
        run(state)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--layout", default=str(FIXTURES / "big-oci-umoci"))
    ap.add_argument("--archive", default=str(FIXTURES / "big-docker-save.tar"))
    ap.add_argument("--docker-host", default="unix:///run/peer-docker.sock")
    a = ap.parse_args()
    layout = Path(a.layout)
    index = json.loads((layout / "index.json").read_text())
    mdesc = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / mdesc[7:]).read_text())
    config = oci.parse_config((layout / "blobs/sha256" / manifest["config"]["digest"][7:])
                              .read_bytes())
    gz = [layout / "blobs/sha256" / layer["digest"][7:] for layer in manifest["layers"]]
    total = sum(os.path.getsize(p) for p in gz)
    work = Path(tempfile.mkdtemp(prefix="matou-bench-img-", dir="/var/tmp"))
    results: dict[str, float] = {}
    try:
        def fresh_dir() -> Path:
            d = work / f"d{time.monotonic_ns()}"
            d.mkdir()
            return d

        def tar_all(d: object) -> None:
            for p in gz:
                subprocess.run(["tar", "-xzf", str(p), "-C", str(d)], check=True)

        results["tar -xzf x5 (floor)"] = _median(a.n, fresh_dir, tar_all)

        def fresh_store_with_blobs() -> object:
            s = open_store(str(fresh_dir()), "overlayfs")
            for p, layer in zip(gz, manifest["layers"], strict=True):
                with open(p, "rb") as f:
                    s.content.ingest(f, Digest.parse(layer["digest"]), layer["size"])
            return s

        def unpack(s: object) -> None:
            s.unpack_layers([LayerSource(Digest.parse(layer["digest"]), d)  # type: ignore[attr-defined]
                             for layer, d in zip(manifest["layers"], config.rootfs_diff_ids,
                                                 strict=True)])

        results["matou unpack (blobs in store)"] = _median(a.n, fresh_store_with_blobs, unpack)
        results["matou load-layout"] = _median(
            a.n, lambda: open_store(str(fresh_dir()), "overlayfs"),
            lambda s: formats.load_layout(s, str(layout)))  # type: ignore[arg-type]

        def load_archive(s: object) -> None:
            with open(a.archive, "rb") as f:
                formats.load_archive(s, f)  # type: ignore[arg-type]

        if os.path.exists(a.archive):
            results["matou load (docker-save tar)"] = _median(
                a.n, lambda: open_store(str(fresh_dir()), "overlayfs"), load_archive)
            docker = ["docker", "-H", a.docker_host]
            if subprocess.run([*docker, "version"], capture_output=True).returncode == 0:
                def clean(_: object = None) -> None:
                    subprocess.run([*docker, "rmi", "-f", "big:latest"], capture_output=True)
                    subprocess.run([*docker, "image", "prune", "-f"], capture_output=True)

                results["docker load (same tar)"] = _median(
                    a.n, clean, lambda _: subprocess.run(
                        [*docker, "load", "-i", a.archive], check=True, capture_output=True))
                clean()
    finally:
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    floor = results["tar -xzf x5 (floor)"]
    docker_t = results.get("docker load (same tar)")
    print(f"big image: {len(gz)} gzip layers, {total / 1e6:.0f} MB compressed (n={a.n})\n")
    print("| case | seconds | MB/s (gzip) | vs tar -xzf | vs docker load |")
    print("|---|---|---|---|---|")
    for name, t in results.items():
        vs_docker = f"{t / docker_t:.2f}x" if docker_t else "-"
        print(f"| {name} | {t:.2f} | {total / 1e6 / t:.0f} | {t / floor:.2f}x | {vs_docker} |")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "images.json").write_text(json.dumps({"seconds": results, "n": a.n}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
