#!/usr/bin/env python3
"""Networks, side by side on two Docker-API daemons (matoud and the peer dockerd), with the
real docker CLI, busybox on both:

    bench/networks.py --matou unix:///run/matou/matou.sock \
                      --peer unix:///run/peer-docker.sock [-n 10]

    run_bridge        docker run --rm busybox true            (default bridge network)
    net_cycle         network create + run -d on it + connect to a second network +
                      rm -f + network rm (both)               one full cycle
    dns_lookup        inside a running container on a user network: nslookup of another
                      container's name at 127.0.0.11, per lookup (100 in a loop through
                      docker exec, less an empty exec; the nslookup process start included,
                      the same on both)

Medians of -n runs; prints one JSON object per daemon and the matou/peer ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable


def _docker(host: str, *args: str, check: bool = True) -> str:
    p = subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True,
                       timeout=120)
    if check and p.returncode != 0:
        raise SystemExit(f"docker -H {host} {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def _median(n: int, fn: Callable[[], object]) -> float:
    """Median milliseconds of ``fn``: its wall time, or the seconds it returns itself."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        inner = fn()
        times.append(inner if isinstance(inner, float) else time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure(host: str, n: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    out: dict[str, float] = {}
    _docker(host, "run", "--rm", "busybox", "true")  # warm
    out["run_bridge_ms"] = _median(n, lambda: _docker(host, "run", "--rm", "busybox", "true"))

    def cycle() -> None:
        a, b, c = f"bna{tag}", f"bnb{tag}", f"bnc{tag}"
        _docker(host, "network", "create", a)
        _docker(host, "network", "create", b)
        _docker(host, "run", "-d", "--name", c, "--network", a, "busybox", "sleep", "60")
        _docker(host, "network", "connect", b, c)
        _docker(host, "rm", "-f", c)
        _docker(host, "network", "rm", a, b)

    out["net_cycle_ms"] = _median(n, cycle)

    net, web, cli = f"bdn{tag}", f"bdw{tag}", f"bdc{tag}"
    _docker(host, "network", "create", net)
    try:
        _docker(host, "run", "-d", "--name", web, "--network", net, "busybox", "sleep", "600")
        _docker(host, "run", "-d", "--name", cli, "--network", net, "busybox", "sleep", "600")
        loop = f"for i in $(seq 100); do nslookup {web} 127.0.0.11 >/dev/null || exit 1; done"

        def lookup() -> float:
            # the whole loop through docker exec, less an empty exec: per lookup
            t = time.perf_counter()
            _docker(host, "exec", cli, "sh", "-c", loop)
            full = time.perf_counter() - t
            t = time.perf_counter()
            _docker(host, "exec", cli, "true")
            return (full - (time.perf_counter() - t)) / 100

        out["dns_lookup_ms"] = _median(max(3, n // 3), lookup)
    finally:
        _docker(host, "rm", "-f", web, cli, check=False)
        _docker(host, "network", "rm", net, check=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matou", default="unix:///run/matou/matou.sock")
    ap.add_argument("--peer", default="unix:///run/peer-docker.sock")
    ap.add_argument("-n", type=int, default=10)
    a = ap.parse_args()
    results = {"matou": measure(a.matou, a.n), "peer": measure(a.peer, a.n)}
    results["ratio"] = {k: round(results["matou"][k] / results["peer"][k], 2)
                        for k in results["matou"]}
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
