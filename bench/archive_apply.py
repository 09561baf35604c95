#!/usr/bin/env python3
"""Time matou's apply_layer against `tar -xzf` on the same .tar.gz layers.

    bench/archive_apply.py [-n ROUNDS] [--size-mib 100] [--dir /dev/shm]

Two layers, made in a temporary directory (never committed): ~100 MiB of random bytes
(100 files of 1 MiB; gzip cannot shrink it) and ~100 MiB of compressible text (a copy
of /usr/lib/python3* and /usr/share/doc trees, cut at the size, with many small files).
Each is packed with `tar -czf`, then unpacked into an empty directory by `tar -xzf`
and by apply_layer (in this process, chown on, as root would), rounds interleaved;
the median wall time is turned into MB/s of uncompressed tar. The input stays in the
page cache; outputs are not synced inside the timing (sync runs between rounds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from matou.archive.apply import apply_layer

MIB = 1 << 20


def _random_tree(dest: Path, size: int) -> None:
    dest.mkdir()
    for i in range(size // MIB):
        (dest / f"blob{i:04d}").write_bytes(os.urandom(MIB))


def _text_tree(dest: Path, size: int) -> None:
    dest.mkdir()
    total = 0
    sources = [p for p in (*Path("/usr/lib").glob("python3*"), Path("/usr/share/doc"),
                           Path("/usr/share/man")) if p.is_dir()]
    for src in sources:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel = Path(dirpath).relative_to(src.parent)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if p.is_symlink() or not p.is_file():
                    continue
                shutil.copy2(p, dest / rel / f)
                total += p.stat().st_size
                if total >= size:
                    return


def _uncompressed_size(tgz: Path) -> int:
    with open(tgz, "rb") as f:
        return apply_layer(f, tempfile.mkdtemp(dir=tgz.parent)).size


def _tar_x(tgz: Path, dest: Path) -> None:
    subprocess.run(["tar", "-xzf", str(tgz), "-C", str(dest)], check=True)


def _matou_x(tgz: Path, dest: Path) -> None:
    with open(tgz, "rb") as f:
        apply_layer(f, str(dest))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--dir", default=None, help="where to work (e.g. /dev/shm: no disk)")
    a = ap.parse_args()
    size = a.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="matou-bench-", dir=a.dir) as tmp:
        work = Path(tmp)
        layers = {}
        for kind, make in (("random", _random_tree), ("text", _text_tree)):
            make(work / kind, size)
            tgz = work / f"{kind}.tar.gz"
            subprocess.run(["tar", "-czf", str(tgz), "-C", str(work / kind), "."], check=True)
            shutil.rmtree(work / kind)
            layers[kind] = tgz
        print("| layer | tar bytes | gz bytes | tar -xzf MB/s | apply_layer MB/s | ratio |")
        print("|---|---|---|---|---|---|")
        for kind, tgz in layers.items():
            raw = _uncompressed_size(tgz)
            times: dict[str, list[float]] = {"tar": [], "matou": []}
            for r in range(a.n):
                for who, extract in (("tar", _tar_x), ("matou", _matou_x)):
                    dest = work / f"out-{who}-{r}"
                    dest.mkdir()
                    os.sync()  # start each run without the last one's writeback
                    t = time.perf_counter()
                    extract(tgz, dest)
                    times[who].append(time.perf_counter() - t)
                    shutil.rmtree(dest)
            mbs = {w: raw / 1e6 / statistics.median(ts) for w, ts in times.items()}
            print(f"| {kind} | {raw} | {tgz.stat().st_size} | {mbs['tar']:.0f} | "
                  f"{mbs['matou']:.0f} | {mbs['matou'] / mbs['tar']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
