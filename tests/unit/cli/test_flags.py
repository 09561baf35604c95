"""The CLI's flag parser reads a command line as the docker CLI (pflag) does."""

from __future__ import annotations

import pytest

from matou.cli.flags import REMAINDER, REMAINDER1, Parser, UsageError


def run_parser() -> Parser:
    p = Parser("matou run")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-h", "--hostname")
    p.add_argument("--network", "--net", dest="network")
    p.add_argument("-n", "--count", type=int)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("cmd", nargs=REMAINDER, metavar="COMMAND")
    return p


def test_shorthand_clusters_values_and_equals() -> None:
    a = run_parser().parse_args(["-itd", "-e=A=1", "-eB=2", "--env", "C=3", "-h", "box",
                                 "--net=host", "busybox", "ls", "-l", "--env", "x"])
    assert (a.interactive, a.tty, a.detach) == (True, True, True)
    assert a.env == ["A=1", "B=2", "C=3"]
    assert (a.hostname, a.network, a.image) == ("box", "host", "busybox")
    assert a.cmd == ["ls", "-l", "--env", "x"]  # flags end at the image


def test_bool_values_and_dash_values() -> None:
    a = run_parser().parse_args(["--detach=false", "-t=true", "-n", "-1", "img"])
    assert (a.detach, a.tty, a.count, a.cmd) == (False, True, -1, [])


def test_defaults_are_fresh_for_each_parse() -> None:
    p = run_parser()
    p.parse_args(["-e", "A=1", "img"])
    assert p.parse_args(["img"]).env == []


def test_interspersed_flags_and_double_dash() -> None:
    p = Parser("matou rm")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    a = p.parse_args(["c1", "-f", "c2", "--", "-c3"])
    assert a.force and a.names == ["c1", "c2", "-c3"]


def test_positionals_shared_out_as_argparse_does() -> None:
    p = Parser("matou commit")
    p.add_argument("container")
    p.add_argument("ref", nargs="?", default=None)
    assert p.parse_args(["c"]).ref is None
    assert p.parse_args(["c", "r:1"]).ref == "r:1"
    q = Parser("matou cp")
    q.add_argument("srcs", nargs="+")
    q.add_argument("dest")
    a = q.parse_args(["a", "b", "c"])
    assert (a.srcs, a.dest) == (["a", "b"], "c")


@pytest.mark.parametrize(("argv", "code", "first_line"), [
    (["--bogus", "img"], 125, "unknown flag: --bogus"),
    (["-x", "img"], 125, "unknown shorthand flag: 'x' in -x"),
    (["-n"], 125, "flag needs an argument: 'n' in -n"),
    (["-n", "x", "img"], 125,
     'invalid argument "x" for "-n, --count" flag: strconv.ParseInt: parsing "x": '
     "invalid syntax"),
    (["-d=maybe", "img"], 125,
     'invalid argument "maybe" for "-d, --detach" flag: strconv.ParseBool: parsing '
     '"maybe": invalid syntax'),
    ([], 1, "matou: 'matou run' requires at least 1 argument"),
])
def test_errors_as_docker_prints_them(argv: list[str], code: int, first_line: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run_parser().parse_args(argv)
    assert e.value.code == code
    err = capsys.readouterr().err.splitlines()
    assert err[0] == first_line
    assert err[2] == "Usage:  matou run [OPTIONS] IMAGE [COMMAND] [ARG...]"
    assert err[4] == "See 'matou run --help' for more information"


def test_counts_worded_as_docker() -> None:
    def message(p: Parser, argv: list[str]) -> str:
        try:
            p._parse(argv)
        except UsageError as e:
            return str(e)
        return ""
    exact = Parser("matou rename")
    exact.add_argument("old")
    exact.add_argument("new")
    assert message(exact, ["a"]) == "matou: 'matou rename' requires 2 arguments"
    none = Parser("matou version")
    assert message(none, ["x"]) == "matou: 'matou version' accepts no arguments"
    exec_ = Parser("matou exec")
    exec_.add_argument("name")
    exec_.add_argument("cmd", nargs=REMAINDER1)
    assert message(exec_, ["c"]) == "matou: 'matou exec' requires at least 2 arguments"
    assert exec_.parse_args(["c", "sh", "-c", "x"]).cmd == ["sh", "-c", "x"]


def test_help_and_a_taken_over_h(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run_parser().parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage:  matou run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    assert "-h, --hostname string" in out and "--help" in out
