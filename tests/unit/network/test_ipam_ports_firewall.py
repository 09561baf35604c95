"""IPAM, port requests and allocation, and the firewall's rule text — no root needed."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from matou.network import bridge
from matou.network.firewall import Firewall, Link
from matou.network.ipam import Pool, mac_for
from matou.network.ports import (
    Allocator,
    PortMap,
    Request,
    docker_ports,
    from_docker,
    parse_key,
    requests,
)


def test_pool_hands_out_in_turn_and_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "net.json")
    p = Pool(path, "172.30.0.0/16")
    assert str(p.gateway) == "172.30.0.1"
    a, b = p.allocate("a"), p.allocate("b")
    assert (a, b) == ("172.30.0.2", "172.30.0.3")
    assert p.allocate("a") == a  # idempotent per owner
    p.release("a")
    assert p.allocate("c") == "172.30.0.4"  # a freed address is not the very next one
    again = Pool(path, "172.30.0.0/16")  # the daemon restarted
    assert again.owners() == {"b": b, "c": "172.30.0.4"}
    assert again.allocate("d") == "172.30.0.5"
    assert json.loads(Path(path).read_text())["Allocations"]["d"] == "172.30.0.5"


def test_pool_wraps_and_runs_out(tmp_path: Path) -> None:
    p = Pool(str(tmp_path / "n.json"), "10.9.0.0/29")  # .1 gateway, .2-.6 usable
    got = [p.allocate(str(i)) for i in range(5)]
    assert got == [f"10.9.0.{n}" for n in range(2, 7)]
    with pytest.raises(FailedPrecondition):
        p.allocate("x")
    p.release("0")
    assert p.allocate("x") == "10.9.0.2"


def test_pool_static_addresses_and_bad_input(tmp_path: Path) -> None:
    p = Pool(str(tmp_path / "n.json"), "10.8.0.0/24", gateway="10.8.0.254")
    assert p.allocate("a", "10.8.0.50") == "10.8.0.50"
    with pytest.raises(AlreadyExists):
        p.allocate("b", "10.8.0.50")
    with pytest.raises(AlreadyExists):
        p.allocate("b", "10.8.0.254")  # the gateway
    for bad in ("10.9.0.5", "10.8.0.255", "not-an-ip"):
        with pytest.raises(InvalidArgument):
            p.allocate("b", bad)
    with pytest.raises(InvalidArgument):
        Pool(str(tmp_path / "m.json"), "10.0.0.0/31")
    with pytest.raises(InvalidArgument):
        Pool(str(tmp_path / "m.json"), "10.0.0.0/24", gateway="10.0.1.1")
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def test_port_requests_from_docker_fields() -> None:
    assert parse_key("53/udp") == ("udp", 53) and parse_key("80") == ("tcp", 80)
    reqs = requests({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                     "81/tcp": [{"HostPort": "9000-9002"}], "82/tcp": None},
                    ["80/tcp", "83/udp"], publish_all=True)
    assert reqs == [Request("tcp", 80, "0.0.0.0", 8080, 8080),
                    Request("tcp", 81, "0.0.0.0", 9000, 9002),
                    Request("tcp", 82, "0.0.0.0", 0, 0),
                    Request("udp", 83, "0.0.0.0", 0, 0)]
    for bad in ({"x/tcp": []}, {"80/icmp": []}, {"80/tcp": [{"HostPort": "70000"}]},
                {"80/tcp": [{"HostPort": "90-80"}]}):
        with pytest.raises(InvalidArgument):
            requests(bad, [], False)


def test_allocator_never_gives_a_port_twice_and_skips_busy_ones() -> None:
    a = Allocator()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(AlreadyExists, match="already allocated"):
            a.allocate("x", [Request("tcp", 80, "0.0.0.0", taken, taken)])
        got = a.allocate("x", [Request("tcp", 80, "0.0.0.0", taken, taken + 3)])
        assert got[0].host_port in range(taken + 1, taken + 4)
    first = a.allocate("y", [Request("tcp", 80, "0.0.0.0", 0, 0),
                             Request("tcp", 81, "0.0.0.0", 0, 0)])
    assert first[0].host_port != first[1].host_port
    with pytest.raises(AlreadyExists):
        a.allocate("z", [Request("tcp", 1, "0.0.0.0", first[0].host_port,
                                 first[0].host_port)])
    a.release("y")
    assert not [k for k, v in a.used.items() if v == "y"]


def test_ports_round_trip_through_docker_shape() -> None:
    maps = [PortMap("tcp", 80, "0.0.0.0", 8080), PortMap("udp", 53, "127.0.0.1", 5353)]
    shown = docker_ports(maps, ["80/tcp", "443/tcp"])
    assert shown == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                     "443/tcp": None,
                     "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}
    assert sorted(from_docker(shown)) == sorted(maps)


def test_firewall_rules_are_ours_and_named_per_bridge() -> None:
    fw = Firewall("matou0")
    assert (fw.dnat, fw.fwd, fw.post) == ("MATOU", "MATOU-FWD", "MATOU-POST")
    other = Firewall("mt1234abcd")
    assert other.fwd == "MATOU-MT1234ABCD-FWD" and len(other.post) <= 28
    rules = fw.link_rules(Link("matou0", "172.18.0.0/16"))
    text = fw.batch(rules + fw.port_rules("172.18.0.2", PortMap("tcp", 80, "127.0.0.1", 8080)),
                    declare=True)
    assert text.startswith("*filter\n:MATOU-FWD - [0:0]\n")
    assert "-A MATOU-FWD -i matou0 ! -o matou0 -j ACCEPT" in text
    assert "-A MATOU-POST -s 172.18.0.0/16 ! -o matou0 -j MASQUERADE" in text
    assert ("-A MATOU -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
            "172.18.0.2:80") in text
    assert all(r.chain.startswith("MATOU") for r in rules)
    internal = fw.link_rules(Link("br1", "10.1.0.0/24", internal=True))
    assert not any("MASQUERADE" in r.spec or "! -o" in r.spec for r in internal)
    assert [j.chain for j in fw.jumps()] == ["FORWARD", "PREROUTING", "OUTPUT", "POSTROUTING"]


def test_free_subnet_skips_routed_ranges() -> None:
    taken = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.16.0.0/12")]
    assert bridge.free_subnet(taken) == "192.168.0.0/20"
    assert bridge.free_subnet([ipaddress.IPv4Network("172.17.0.0/16")]) == "172.18.0.0/16"
    assert bridge.free_subnet([], own="172.25.0.0/16") == "172.25.0.0/16"
    with pytest.raises(FailedPrecondition):
        bridge.free_subnet([ipaddress.IPv4Network("0.0.0.0/0")])
