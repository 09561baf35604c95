#!/usr/bin/env python3
"""Time matou-runtime against runc and crun on the same busybox bundle, in one run.

    bench/runtime.py [-n ITERATIONS] [--runtimes matou-runtime,runc,crun]

Per runtime: `run` of a bundle whose process is `true`, and `create` → `start` →
`delete` (each command timed, then summed). Rounds are interleaved across runtimes so
that machine noise hits them alike; medians are reported, with ratios to runc. A
breakdown of matou's own cost (interpreter start, imports, `--version`) follows.
Prints a Markdown table; writes bench/results/runtime.json.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def _timed(cmd: list[str], **kw: object) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   **kw)  # type: ignore[call-overload]
    return (time.perf_counter() - t) * 1000


def _bundle(dest: Path) -> Path:
    subprocess.run([str(HERE.parent / "tools/busybox-bundle.sh"), str(dest), "true"],
                   check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "MATOU_RUNTIME": str(VENV_BIN / "matou-runtime")})
    return dest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--runtimes", default="matou-runtime,runc,crun")
    a = ap.parse_args()
    runtimes = {}
    for name in a.runtimes.split(","):
        path = str(VENV_BIN / name) if name == "matou-runtime" else shutil.which(name)
        if path and os.path.exists(path):
            runtimes[name] = path
    work = Path(tempfile.mkdtemp(prefix="matou-bench-"))
    hugetlb = Path("/sys/fs/cgroup/hugetlb")
    # crun refuses the hybrid layout while hugetlb sits on cgroup2 (see shared/peers)
    mounted = "crun" in runtimes and not hugetlb.exists()
    if mounted:
        hugetlb.mkdir()
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(hugetlb)],
                       check=True)
    try:
        bundle = _bundle(work / "bundle")
        results: dict[str, dict[str, list[float]]] = {
            n: {"run": [], "create": [], "start": [], "delete": [], "lifecycle": []}
            for n in runtimes}
        for i in range(a.n):
            for name, path in runtimes.items():
                root = work / f"root-{name}"
                base = [path, "--root", str(root)]
                cid = f"bench-{i}"
                r = results[name]
                r["run"].append(_timed([*base, "run", "--bundle", str(bundle), cid]))
                c = _timed([*base, "create", "--bundle", str(bundle), cid])
                s = _timed([*base, "start", cid])
                time.sleep(0.01)  # let `true` exit: delete wants a stopped container
                d = _timed([*base, "delete", "--force", cid])
                r["create"].append(c)
                r["start"].append(s)
                r["delete"].append(d)
                r["lifecycle"].append(c + s + d)
        py = str(VENV_BIN / "python")
        breakdown = {
            "python -c pass": [_timed([py, "-c", "pass"]) for _ in range(a.n)],
            "python -c 'import matou.runtime.create'":
                [_timed([py, "-c", "import matou.runtime.create"]) for _ in range(a.n)],
            "matou-runtime --version":
                [_timed([runtimes.get("matou-runtime", "true"), "--version"])
                 for _ in range(a.n)],
        }
    finally:
        if mounted:
            subprocess.run(["umount", str(hugetlb)], check=False)
            hugetlb.rmdir()
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    base = med.get("runc")
    print(f"| runtime | run `true` (ms) | create (ms) | start (ms) | delete (ms) | "
          f"create+start+delete (ms) | run vs runc | lifecycle vs runc |  (n={a.n})")
    print("|---|---|---|---|---|---|---|---|")
    for n, m in med.items():
        rr = f"{m['run'] / base['run']:.2f}x" if base else "-"
        lr = f"{m['lifecycle'] / base['lifecycle']:.2f}x" if base else "-"
        print(f"| {n} | {m['run']:.1f} | {m['create']:.1f} | {m['start']:.1f} | "
              f"{m['delete']:.1f} | {m['lifecycle']:.1f} | {rr} | {lr} |")
    print("\nwhere matou's time goes (median ms):")
    for k, v in breakdown.items():
        print(f"- {k}: {statistics.median(v):.1f}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "runtime.json").write_text(json.dumps(
        {"medians_ms": med, "breakdown_ms": {k: statistics.median(v)
                                             for k, v in breakdown.items()}, "n": a.n},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
