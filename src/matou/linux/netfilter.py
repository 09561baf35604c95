"""netfilter rules through iptables(8) — the one tool every firewall front-end on Linux
(iptables-legacy, iptables-nft, ufw, firewalld) agrees on; nftables-only hosts run it as
iptables-nft. Rule text is built above (matou.network.firewall); here it is only applied.

Batches go through ``iptables-restore --noflush``: one process, one atomic commit, however
many rules; a chain declared in a batch (``:NAME - [0:0]``) is created or flushed.
"""

from __future__ import annotations

import shutil
import subprocess

from matou.errors import SystemError_, Unsupported


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise Unsupported(f"{name} not found: install the iptables package")
    return path


def available(v6: bool = False) -> bool:
    name = "ip6tables-restore" if v6 else "iptables-restore"
    return shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin") is not None


def restore(batch: str, v6: bool = False) -> None:
    """Apply an iptables-restore batch (``*table`` … ``COMMIT`` sections) atomically;
    ``v6``: to ip6tables."""
    tool = "ip6tables-restore" if v6 else "iptables-restore"
    p = subprocess.run([_tool(tool), "--noflush", "-w", "5"], input=batch,
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise SystemError_(f"{tool}: {p.stderr.strip()}", "rules", 22)


def run(*args: str, v6: bool = False) -> bool:
    """One iptables (``v6``: ip6tables) command; True on success (``-C`` answers a
    question this way)."""
    p = subprocess.run([_tool("ip6tables" if v6 else "iptables"), "-w", "5", *args],
                       capture_output=True, text=True, timeout=30)
    return p.returncode == 0


def chains(table: str, v6: bool = False) -> set[str]:
    p = subprocess.run([_tool("ip6tables" if v6 else "iptables"), "-w", "5", "-t", table,
                        "-S"], capture_output=True, text=True, timeout=30)
    return {line.split()[1] for line in p.stdout.splitlines() if line.startswith("-N ")}


def sysctl(key: str, value: str) -> None:
    """Set a sysctl (net.ipv4.ip_forward, net.ipv4.conf.BR.route_localnet …)."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise SystemError_("sysctl", key, e.errno or 5) from e
