"""The default bridge network as the real docker CLI sees it: addresses, published ports
(from outside and through 127.0.0.1), container to container, forwarding and masquerade
under a FORWARD policy of DROP, the none/host/container: modes, live restore of the
network, and nothing left behind when the daemon stops."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.matoud import Daemon, leftovers, netfilter_rules

pytestmark = pytest.mark.skipif(not shutil.which("iptables"), reason="no iptables")

WEB = "echo hello-web > /www; exec httpd -f -p 80 -h /"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, deadline: float = 10) -> str:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def _nc(d: Daemon, target: str, port: int, *run_args: str) -> str:
    """An HTTP GET for /www from a new busybox container (busybox wget needs NSS)."""
    script = (f'printf "GET /www HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {target} {port} '
              "| tail -n 1")
    return d.docker("run", "--rm", *run_args, "busybox", "sh", "-c", script,
                    check=False).stdout.strip()


def _inspect(d: Daemon, name: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(d.docker("inspect", name).stdout)[0]
    return out


def test_bridge_ports_and_modes(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    port = _free_port()
    d.docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c", WEB)
    net = _inspect(d, "web")["NetworkSettings"]
    assert isinstance(net, dict)
    ip, gw = net["IPAddress"], net["Gateway"]
    subnet = ipaddress.IPv4Network(f"{gw}/{net['IPPrefixLen']}", strict=False)
    assert ipaddress.IPv4Address(ip) in subnet and ip != gw
    assert net["MacAddress"].startswith("02:42:")
    assert net["Networks"]["bridge"]["IPAddress"] == ip
    assert net["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    # from the host: the container's address, and the published port through loopback
    assert _get(f"http://{ip}/www") == "hello-web\n"
    assert _get(f"http://127.0.0.1:{port}/www") == "hello-web\n"
    # container to container by address, and back in through the published port
    assert _nc(d, ip, 80) == "hello-web"
    assert _nc(d, gw, port) == "hello-web"
    hosts = d.docker("exec", "web", "cat", "/etc/hosts").stdout
    assert f"{ip}\t" in hosts
    linked = d.docker("run", "--rm", "--link", "web:db", "busybox", "cat", "/etc/hosts").stdout
    assert f"{ip}\tdb\t" in linked  # the legacy --link: a hosts entry on the default bridge
    assert d.docker("port", "web").stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
    assert d.docker("ps", "--format", "{{.Ports}}", "-f", "name=web").stdout.strip() == \
        f"0.0.0.0:{port}->80/tcp"
    # -P: every exposed port gets a free host port
    d.docker("run", "-d", "--name", "pub", "--expose", "81", "-P", "busybox",
             "httpd", "-f", "-p", "81", "-h", "/")
    mapped = d.docker("port", "pub", "81").stdout.strip()
    pub_port = int(mapped.rsplit(":", 1)[1])
    assert pub_port != port
    assert len([r for r in netfilter_rules(d.chain_prefix) if "-j DNAT" in r]) == 2
    # a host port that is taken is refused, as dockerd does
    taken = d.docker("run", "-d", "-p", f"{port}:80", "busybox", "sleep", "1", check=False)
    assert taken.returncode == 125 and "already allocated" in taken.stderr
    d.docker("rm", "-f", "pub")
    assert not [r for r in netfilter_rules(d.chain_prefix) if f"--dport {pub_port}" in r]
    # the other modes
    links = d.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    host = d.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout
    assert d.bridge in host
    shared = d.docker("run", "--rm", "--network", "container:web", "busybox", "ip", "-o",
                      "-4", "addr").stdout
    assert ip in shared


@contextlib.contextmanager
def _outside() -> Iterator[tuple[str, str]]:
    """A network namespace standing for "the internet": a veth from the host, a TCP
    server in it that answers with the peer address it sees. Yields (server ip, host ip)."""
    tag = uuid.uuid4().hex[:6]
    ns, veth = f"mtout{tag}", f"mto{tag}"
    n = int(tag[:2], 16)
    host_ip, far_ip = f"10.254.{n}.1", f"10.254.{n}.2"
    server = None
    try:
        for cmd in (["ip", "netns", "add", ns],
                    ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                     "netns", ns],
                    ["ip", "addr", "add", f"{host_ip}/30", "dev", veth],
                    ["ip", "link", "set", veth, "up"],
                    ["ip", "-n", ns, "addr", "add", f"{far_ip}/30", "dev", "eth0"],
                    ["ip", "-n", ns, "link", "set", "eth0", "up"],
                    ["ip", "-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=10)
        code = ("import socket\ns=socket.socket()\ns.setsockopt(1,2,1)\n"
                f"s.bind(('{far_ip}',9999))\ns.listen()\n"
                "while True:\n c,a=s.accept()\n c.sendall((a[0]+'\\n').encode())\n c.close()")
        server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", code])
        time.sleep(0.3)
        yield far_ip, host_ip
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def _forward_policy_drop() -> Iterator[None]:
    """The seed's UFW case: the host drops forwarded traffic by default."""
    listing = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True,
                             text=True).stdout
    before = "DROP" if "-P FORWARD DROP" in listing else "ACCEPT"
    subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-P", "FORWARD", before], check=True)


def test_forwarding_and_masquerade_under_drop_policy(daemon: Daemon,
                                                      busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    with _forward_policy_drop(), _outside() as (far, host_side):
        seen = d.docker("run", "--rm", "busybox", "sh", "-c",
                        f"nc -w 3 {far} 9999 </dev/null").stdout.strip()
    assert seen == host_side  # reached through FORWARD, source masqueraded


def test_network_survives_restart_and_leaves_nothing(daemon: Daemon,
                                                      busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    port = _free_port()
    d.docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c", WEB)
    ip = _inspect(d, "web")["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    assert _get(f"http://127.0.0.1:{port}/www") == "hello-web\n"
    d.stop(signal.SIGKILL)
    assert _get(f"http://127.0.0.1:{port}/www") == "hello-web\n"  # the daemon is gone
    d.start()
    assert _inspect(d, "web")["NetworkSettings"]["IPAddress"] == ip  # type: ignore[index]
    assert _get(f"http://127.0.0.1:{port}/www") == "hello-web\n"
    d.docker("run", "--rm", "busybox", "true")  # new containers still get addresses
    d.docker("rm", "-f", "web")
    d.stop()
    assert leftovers(d) == []
    assert not list((d.run / "netns").iterdir())
