#!/usr/bin/env python3
"""The client: `matou` against the docker CLI on the same daemon, with hyperfine.

    bench/cli.py [--host unix:///run/matou/matou.sock] [-n 20]

    version            `version` (a /version round trip and the CLI's start)
    ps                 `ps` with the daemon's containers as they are
    run                `run --rm busybox true`

Prints one JSON object: milliseconds per figure for each CLI, and matou/docker ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="unix:///run/matou/matou.sock")
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args()
    matou = shutil.which("matou") or os.path.join(os.path.dirname(sys.executable), "matou")
    cases = {"version": "version", "ps": "ps", "run": "run --rm busybox true"}
    out: dict[str, dict[str, float]] = {"docker": {}, "matou": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases.items():
            path = os.path.join(tmp, f"{name}.json")
            subprocess.run(["hyperfine", "-N", "-w", "3", "-r", str(a.n), "--export-json", path,
                            f"docker -H {a.host} {args}", f"{matou} -H {a.host} {args}"],
                           check=True, capture_output=True, timeout=600)
            with open(path) as f:
                results = json.load(f)["results"]
            out["docker"][name] = round(results[0]["median"] * 1000, 1)
            out["matou"][name] = round(results[1]["median"] * 1000, 1)
    out["ratio"] = {k: round(out["matou"][k] / out["docker"][k], 2) for k in cases}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
