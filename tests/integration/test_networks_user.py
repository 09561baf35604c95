"""User-defined bridge networks through the real docker CLI and docker-compose v1: name
resolution at 127.0.0.11 (names, aliases, compose services), isolation between networks,
internal networks, connect/disconnect of a running container, persistence across a
daemon restart, and nothing left behind after `network rm` and daemon shutdown."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.matoud import Daemon, leftovers, netfilter_rules
from tests.integration.test_network import WEB, _forward_policy_drop, _nc, _outside

pytestmark = pytest.mark.skipif(not shutil.which("iptables"), reason="no iptables")


def _resolve(d: Daemon, net: str, name: str) -> list[str]:
    out = d.docker("run", "--rm", "--network", net, "busybox", "nslookup", name, "127.0.0.11",
                   check=False).stdout
    return [line.split()[-1] for line in out.splitlines()
            if line.startswith("Address") and "#" not in line and ":53" not in line]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def test_user_networks(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.docker("network", "create", "front")
    d.docker("network", "create", "--internal", "--subnet", "10.231.0.0/24", "back")
    nets = json.loads(d.docker("network", "ls", "--format", "{{json .Name}}").stdout
                      .replace("\n", ",").rstrip(",").join("[]"))
    assert sorted(nets) == ["back", "bridge", "front", "host", "none"]
    back = json.loads(d.docker("network", "inspect", "back").stdout)[0]
    assert back["Internal"] and back["IPAM"]["Config"][0]["Subnet"] == "10.231.0.0/24"
    assert d.docker("network", "create", "front", check=False).returncode != 0

    d.docker("run", "-d", "--name", "web", "--network", "front", "--network-alias", "www",
             "busybox", "sh", "-c", WEB)
    web = json.loads(d.docker("inspect", "web").stdout)[0]
    ip = web["NetworkSettings"]["Networks"]["front"]["IPAddress"]
    assert ip and web["NetworkSettings"]["IPAddress"] == ""  # top level: default bridge only
    for name in ("web", "www", web["Id"][:12]):
        assert _resolve(d, "front", name) == [ip], name
    assert _nc(d, "web", 80, "--network", "front") == "hello-web"
    assert "nameserver 127.0.0.11" in d.docker(
        "run", "--rm", "--network", "front", "busybox", "cat", "/etc/resolv.conf").stdout
    # another network (the default bridge included) neither resolves nor reaches it
    assert _nc(d, ip, 80) == ""
    assert _resolve(d, "back", "web") == []
    members = json.loads(d.docker("network", "inspect", "front").stdout)[0]["Containers"]
    assert members[web["Id"]]["IPv4Address"].startswith(ip + "/")

    # connect a running container to a second network, and take it away again
    d.docker("network", "connect", "--alias", "db", "--ip", "10.231.0.50", "back", "web")
    assert "10.231.0.50" in d.docker("exec", "web", "ip", "-o", "-4", "addr").stdout
    assert _resolve(d, "back", "db") == ["10.231.0.50"]
    assert _nc(d, "db", 80, "--network", "back") == "hello-web"
    assert d.docker("network", "rm", "back", check=False).returncode != 0  # in use
    d.docker("network", "disconnect", "back", "web")
    assert "10.231.0.50" not in d.docker("exec", "web", "ip", "-o", "-4", "addr").stdout
    assert _nc(d, "10.231.0.50", 80, "--network", "back") == ""

    # an internal network has no way out; a normal one does (even under DROP)
    with _forward_policy_drop(), _outside() as (far, _):
        probe = f"nc -w 2 {far} 9999 </dev/null"
        assert d.docker("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                        probe).stdout.strip()
        assert d.docker("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                        probe, check=False).stdout.strip() == ""

    # the daemon dies and comes back: networks, addresses and names are still there
    d.stop(signal.SIGKILL)
    d.start()
    assert _resolve(d, "front", "www") == [ip]
    assert _nc(d, "web", 80, "--network", "front") == "hello-web"
    d.docker("rm", "-f", "web")
    bridge = f"br-{back['Id'][:12]}"
    assert _link_exists(bridge)
    d.docker("network", "rm", "back")
    assert not _link_exists(bridge)
    assert not [r for r in netfilter_rules(d.chain_prefix) if bridge in r]
    assert d.docker("network", "prune", "-f").stdout.split() == ["Deleted", "Networks:",
                                                                  "front"]
    d.stop()
    assert leftovers(d) == []


COMPOSE = """
version: "2.4"
services:
  web:
    image: busybox
    command: sh -c 'echo hello-from-web > /index.html; exec httpd -f -p 80 -h /'
    networks: [front, back]
  client:
    image: busybox
    command: sh -c 'for i in $$(seq 100); do printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" |
      nc -w 2 web 80 | tail -n 1 | grep . && break; sleep 0.2; done; exec sleep 600'
    networks: [front]
    depends_on: [web]
  db:
    image: busybox
    command: sh -c 'echo db-ok > /index.html; exec httpd -f -p 80 -h /'
    networks: [back]
networks:
  front: {}
  back:
    internal: true
"""


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="no docker-compose")
def test_compose_three_services(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", "mt", *args], cwd=tmp_path,
                              env={"DOCKER_HOST": d.host, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=120)

    try:
        assert compose("up", "-d").returncode == 0
        assert compose("ps").stdout.count(" Up ") == 3
        deadline = time.monotonic() + 30
        while "hello-from-web" not in compose("logs", "client").stdout:
            assert time.monotonic() < deadline, compose("logs").stdout
            time.sleep(0.3)
        fetch = 'printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" | nc -w 2 db 80 | tail -n 1'
        assert compose("exec", "-T", "web", "sh", "-c", fetch).stdout.strip() == "db-ok"
        assert compose("exec", "-T", "client", "sh", "-c", fetch).stdout.strip() == ""
        assert compose("up", "-d", "--scale", "db=2").returncode == 0
        found = compose("exec", "-T", "web", "nslookup", "db", "127.0.0.11").stdout
        assert found.count("Address: 10.") + found.count("Address: 172.") + \
            found.count("Address: 192.") == 2, found
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert d.docker("network", "ls", "-q", "-f", "name=mt_").stdout == ""


def test_ipv6_networks(daemon: Daemon, busybox_archive: Path) -> None:
    """EnableIPv6: a given and an automatic (fd00::/8) /64 beside the IPv4 subnet; names
    answer AAAA; --ip6; isolation of IPv6 between networks, none out of an internal one;
    ip6tables rules there while a network has IPv6 and gone with it."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.docker("network", "create", "--ipv6", "--subnet", "fd42:77::/64", "six")
    d.docker("network", "create", "--ipv6", "auto6")
    d.docker("network", "create", "--ipv6", "--internal", "--subnet", "fd42:78::/64",
             "inner6")
    configs = json.loads(d.docker("network", "inspect", "-f", "{{json .IPAM.Config}}",
                                  "six").stdout)
    assert configs[1] == {"Subnet": "fd42:77::/64", "Gateway": "fd42:77::1"}
    auto = json.loads(d.docker("network", "inspect", "-f", "{{json .IPAM.Config}}",
                               "auto6").stdout)[1]["Subnet"]
    assert auto.startswith("fd") and auto.endswith("::/64")
    refused = d.docker("network", "create", "--subnet", "fd42:79::/64", "nov6", check=False)
    assert refused.returncode != 0 and "IPv6" in refused.stderr
    d.docker("run", "-d", "--name", "srv6", "--network", "six", "--ip6", "fd42:77::99",
             "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "other6", "--network", "auto6", "busybox", "sleep", "300")
    ep = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks.six}}",
                             "srv6").stdout)
    assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == \
        ("fd42:77::99", 64, "fd42:77::1")
    members = json.loads(d.docker("network", "inspect", "-f", "{{json .Containers}}",
                                  "six").stdout)
    assert [m["IPv6Address"] for m in members.values()] == ["fd42:77::99/64"]
    same = d.docker("run", "--rm", "--network", "six", "busybox", "sh", "-c",
                    "nslookup -type=AAAA srv6 127.0.0.11; ping -6 -c1 -W2 srv6").stdout
    assert "fd42:77::99" in same and "1 packets received" in same
    other_ip = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "other6").stdout)["auto6"]["GlobalIPv6Address"]
    across = d.docker("run", "--rm", "--network", "six", "busybox", "ping", "-6", "-c1",
                      "-W2", other_ip, check=False)
    assert across.returncode != 0  # another network: not reachable
    # a published port reaches a container with IPv6 on the host's IPv6 addresses too
    d.docker("run", "-d", "--name", "web6", "--network", "six", "-p", "80", "busybox",
             "httpd", "-f", "-p", "80", "-h", "/etc")
    port = d.docker("port", "web6", "80").stdout.split(":")[-1].strip()
    import urllib.request

    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://[fd42:77::1]:{port}/hostname",
                                        timeout=2) as r:
                assert r.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert any("-j DNAT" in r for r in netfilter_rules(d.chain_prefix) if r.startswith("v6 "))
    d.docker("rm", "-f", "web6")
    assert not [r for r in netfilter_rules(d.chain_prefix)
                if r.startswith("v6 ") and "-j DNAT" in r]
    d.docker("network", "connect", "inner6", "srv6")
    inner_ip = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "srv6").stdout)["inner6"]["GlobalIPv6Address"]
    assert inner_ip.startswith("fd42:78::")
    route = d.docker("run", "--rm", "--network", "inner6", "busybox", "ip", "-6",
                     "route").stdout
    assert "default" not in route
    assert any(line.startswith("v6 ") for line in netfilter_rules(d.chain_prefix))
    d.docker("rm", "-f", "srv6", "other6")
    d.docker("network", "rm", "six", "auto6", "inner6")
    assert not [r for r in netfilter_rules(d.chain_prefix) if r.startswith("v6 ")]


def test_ipv6_on_the_default_bridge(daemon: Daemon, busybox_archive: Path) -> None:
    """matoud --ipv6 --fixed-cidr-v6: the default bridge's containers get IPv6 addresses;
    started again without it, the bridge drops its IPv6 subnet."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.stop()
    d.extra = ["--ipv6", "--fixed-cidr-v6", "fd42:bb::/64"]
    d.start()
    d.docker("run", "-d", "--name", "b6", "busybox", "sleep", "300")
    got = d.docker("inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}} "
                   "{{.NetworkSettings.IPv6Gateway}}", "b6").stdout.split()
    assert got[0].startswith("fd42:bb::") and got[1] == "fd42:bb::1"
    ping = d.docker("run", "--rm", "busybox", "ping", "-6", "-c1", "-W2", got[0]).stdout
    assert "1 packets received" in ping
    d.docker("rm", "-f", "b6")
    d.stop()
    d.extra = []
    d.start()
    listing = subprocess.run(["ip", "-6", "addr", "show", d.bridge], capture_output=True,
                             text=True).stdout
    assert "fd42:bb" not in listing
    assert "false" in d.docker("network", "inspect", "-f", "{{.EnableIPv6}}", "bridge").stdout
