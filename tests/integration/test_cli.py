"""`matou` beside the real docker CLI, on the same matoud: the same commands must print the
same thing (ages normalised) and end with the same exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.matoud import Daemon

MATOU = os.path.join(os.path.dirname(sys.executable), "matou")
pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")

AGES = re.compile(r"(Less than a second|About an? (minute|hour)|\d+ (second|minute|hour|day|"
                  r"week|month|year)s?)( ago)?")
IDS = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b")


def _norm(text: str) -> str:
    # ages differ by the second they are printed at, and the columns' padding with them
    return re.sub(r" {2,}", "  ", AGES.sub("AGE", text))


def both(d: Daemon, *args: str, stdin: str | None = None) -> tuple[str, int]:
    """Run ``args`` with docker and with matou; assert they agree; return matou's."""
    out = []
    for cli in ("docker", MATOU):
        p = subprocess.run([cli, "-H", d.host, *args], capture_output=True, text=True,
                           timeout=60, input=stdin)
        out.append((p.stdout, p.returncode, p.stderr))
    (dout, dcode, derr), (mout, mcode, merr) = out
    assert (_norm(mout), mcode) == (_norm(dout), dcode), \
        f"{args}\ndocker ({dcode}):\n{dout}{derr}\nmatou ({mcode}):\n{mout}{merr}"
    return mout, mcode


def pair(d: Daemon, *args: str) -> None:
    """A verb that changes things, on two alike objects: NAME is `d-NAME` for docker and
    `m-NAME` for matou; outputs compared with the prefixes taken out."""
    out = []
    for cli, prefix in (("docker", "d-"), (MATOU, "m-")):
        argv = [a.replace("NAME", prefix) for a in args]
        p = subprocess.run([cli, "-H", d.host, *argv], capture_output=True, text=True,
                           timeout=60)
        out.append((IDS.sub("ID", _norm(p.stdout.replace(prefix, ""))), p.returncode,
                    p.stderr.replace(prefix, "")))
    (dout, dcode, derr), (mout, mcode, merr) = out
    assert (mout, mcode) == (dout, dcode), \
        f"{args}\ndocker ({dcode}):\n{dout}{derr}\nmatou ({mcode}):\n{mout}{merr}"


def test_side_by_side(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    # images
    both(d, "images")
    both(d, "images", "-q")
    both(d, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    both(d, "image", "ls")
    d.docker("tag", "busybox", "bb:one")
    subprocess.run([MATOU, "-H", d.host, "tag", "busybox", "bb:two"], check=True, timeout=60)
    both(d, "images", "bb")
    both(d, "history", "-q", "busybox")
    # containers
    assert both(d, "run", "--rm", "busybox", "echo", "Hello World!")[0] == "Hello World!\n"
    both(d, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    both(d, "run", "--rm", "-i", "busybox", "cat", stdin="piped\n")
    both(d, "run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "1:2", "busybox", "sh", "-c",
         "echo $A $(pwd) $(id -u):$(id -g)")
    d.docker("run", "-d", "--name", "box", "-p", "127.0.0.1::80", "--label", "k=v",
             "busybox", "sleep", "600")
    both(d, "ps")
    both(d, "ps", "-a")
    both(d, "ps", "-q")
    both(d, "ps", "--no-trunc", "-q")
    both(d, "ps", "--format", "{{.Names}} {{.Image}} {{.Labels}}")
    both(d, "ps", "--format", "table {{.ID}}\t{{.Names}}\t{{.Ports}}")
    both(d, "ps", "-f", "label=k=v", "--format", "{{.Names}}")
    both(d, "container", "ls", "-a")
    both(d, "port", "box")
    both(d, "port", "box", "80")
    both(d, "inspect", "-f", "{{.Name}} {{.State.Running}} {{.Config.Image}}", "box")
    both(d, "inspect", "--format", "{{json .Config.Labels}}", "box")
    both(d, "inspect", "nosuchthing")
    both(d, "exec", "box", "sh", "-c", "echo in; exit 4")
    both(d, "exec", "-i", "box", "cat", stdin="typed\n")
    both(d, "exec", "-e", "X=y", "-w", "/etc", "box", "sh", "-c", "echo $X $(pwd)")
    both(d, "logs", "box")
    both(d, "diff", "box")
    both(d, "wait", "nosuch")
    both(d, "stop", "nosuch")
    both(d, "rm", "nosuch")
    for prefix in ("d-", "m-"):
        d.docker("run", "-d", "--name", f"{prefix}c1", "busybox", "sleep", "600")
    pair(d, "pause", "NAMEc1")
    pair(d, "unpause", "NAMEc1")
    pair(d, "stop", "-t", "1", "NAMEc1")
    pair(d, "start", "NAMEc1")
    pair(d, "restart", "-t", "0", "NAMEc1")
    pair(d, "kill", "NAMEc1")
    pair(d, "rm", "NAMEc1")
    pair(d, "create", "--name", "NAMEc2", "busybox", "true")
    pair(d, "rename", "NAMEc2", "NAMEc3")
    pair(d, "start", "NAMEc3")
    pair(d, "wait", "NAMEc3")
    pair(d, "rm", "NAMEc3")
    pair(d, "volume", "create", "NAMEv")
    pair(d, "volume", "rm", "NAMEv")
    pair(d, "tag", "busybox", "NAMEimg:1")
    pair(d, "rmi", "NAMEimg:1")
    # volumes and networks
    d.docker("volume", "create", "vol1")
    both(d, "volume", "ls")
    both(d, "volume", "ls", "-q")
    both(d, "volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "vol1")
    both(d, "network", "ls")
    both(d, "network", "ls", "-q")
    both(d, "network", "inspect", "-f", "{{.Name}} {{.Driver}}", "bridge")
    d.docker("rm", "-f", "box")
    d.docker("volume", "rm", "vol1")
    both(d, "ps", "-a")


def test_errors_and_exit_codes(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))

    def code(*args: str) -> int:
        return subprocess.run([MATOU, "-H", d.host, *args], capture_output=True,
                              timeout=60).returncode

    assert code("run", "--rm", "busybox", "nosuchcmd") == 127
    assert code("run", "--rm", "--network", "nosuchnet", "busybox", "true") == 125
    assert code("nosuchcommand") == 1
    p = subprocess.run([MATOU, "-H", "unix:///nonexistent.sock", "ps"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and "Is the daemon running?" in p.stderr
    assert "DOCKER_HOST" in p.stderr


def test_side_by_side_more(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.docker("run", "-d", "--name", "box", "busybox", "sh", "-c",
             "echo made > /made; exec sleep 600")
    both(d, "system", "df")
    both(d, "system", "df", "-v")
    both(d, "image", "inspect", "-f", "{{.Id}} {{.Os}}", "busybox")
    both(d, "history", "busybox")
    both(d, "diff", "box")
    head = both(d, "stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}")[0]
    assert head.split()[:2] == ["NAME", "PIDS"]
    # copies, both ways, as the docker CLI makes them
    (tmp_path / "in.txt").write_text("from the host\n")
    for cli, dest in (("docker", "d"), (MATOU, "m")):
        subprocess.run([cli, "-H", d.host, "cp", str(tmp_path / "in.txt"), f"box:/{dest}.txt"],
                       check=True, timeout=60)
        subprocess.run([cli, "-H", d.host, "cp", "box:/made", str(tmp_path / f"{dest}.out")],
                       check=True, timeout=60)
        (tmp_path / f"{dest}-dir").mkdir()
        subprocess.run([cli, "-H", d.host, "cp", "box:/etc", str(tmp_path / f"{dest}-dir")],
                       check=True, timeout=60)
    assert (tmp_path / "d.out").read_text() == (tmp_path / "m.out").read_text() == "made\n"
    assert sorted(os.listdir(tmp_path / "d-dir" / "etc")) == \
        sorted(os.listdir(tmp_path / "m-dir" / "etc"))
    both(d, "exec", "box", "cat", "/d.txt", "/m.txt")
    # save, load, commit, export
    for cli, name in (("docker", "d.tar"), (MATOU, "m.tar")):
        subprocess.run([cli, "-H", d.host, "save", "-o", str(tmp_path / name), "busybox"],
                       check=True, timeout=60)
    both(d, "load", "-i", str(tmp_path / "m.tar"))
    both(d, "load", "-i", str(tmp_path / "d.tar"))
    for prefix in ("d-", "m-"):
        d.docker("run", "-d", "--name", f"{prefix}c", "busybox", "sleep", "600")
    pair(d, "update", "--memory", "64m", "NAMEc")
    pair(d, "commit", "NAMEc", "NAMEimage:1")
    both(d, "images", "--format", "{{.Repository}}:{{.Tag}}")
    for cli, name in (("docker", "d.export"), (MATOU, "m.export")):
        subprocess.run([cli, "-H", d.host, "export", "-o", str(tmp_path / name), "box"],
                       check=True, timeout=60)
    assert (tmp_path / "d.export").stat().st_size == (tmp_path / "m.export").stat().st_size
    pair(d, "container", "prune", "-f")
    pair(d, "rm", "-f", "NAMEc")


@pytest.mark.skipif(not shutil.which("tmux"), reason="no tmux")
def test_run_it_in_tmux(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    """A real terminal: typing, a window resize, and ctrl-p ctrl-q to detach."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    sock = f"matou-test-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True,
                              timeout=30).stdout

    def screen_has(text: str) -> bool:
        for _ in range(100):
            if text in tmux("capture-pane", "-p", "-t", "t"):
                return True
            time.sleep(0.1)
        return False

    try:
        status = tmp_path / "status"
        tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
             f"{MATOU} -H {d.host} run -it --name tt busybox sh; echo $? > {status}")
        tmux("set-option", "-t", "t", "remain-on-exit", "on")
        assert screen_has("#"), tmux("capture-pane", "-p", "-t", "t")
        tmux("send-keys", "-t", "t", "echo typed-$((40+2))", "Enter")
        assert screen_has("typed-42")
        tmux("resize-window", "-t", "t", "-x", "100", "-y", "30")
        time.sleep(0.3)
        tmux("send-keys", "-t", "t", "stty size", "Enter")
        assert screen_has("30 100"), tmux("capture-pane", "-p", "-t", "t")
        tmux("send-keys", "-t", "t", "C-p", "C-q")
        for _ in range(100):
            if tmux("list-panes", "-t", "t", "-F", "#{pane_dead}").strip() == "1":
                break
            time.sleep(0.1)
        assert status.read_text() == "0\n"  # matou left at once, and cleanly
        assert d.docker("inspect", "-f", "{{.State.Running}}", "tt").stdout == "true\n"
    finally:
        tmux("kill-server")


def test_side_by_side_rest(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.docker("run", "-d", "--name", "box", "busybox", "sleep", "600")
    out = both(d, "top", "box")[0]
    assert out.split()[:2] == ["UID", "PID"]
    both(d, "info", "--format", "{{.OSType}} {{.Containers}} {{.Images}}")
    both(d, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
    # networks: create, connect, disconnect, rm, prune
    for prefix, subnet in (("d-", "10.201.0.0/24"), ("m-", "10.202.0.0/24")):
        subprocess.run([("docker" if prefix == "d-" else MATOU), "-H", d.host, "network",
                        "create", "--subnet", subnet, f"{prefix}net"], check=True,
                       capture_output=True, timeout=60)
    pair(d, "network", "connect", "--alias", "x", "NAMEnet", "box")
    pair(d, "network", "disconnect", "NAMEnet", "box")
    pair(d, "network", "rm", "NAMEnet")
    both(d, "network", "prune", "-f")
    # volumes and images pruned
    for prefix in ("d-", "m-"):
        d.docker("volume", "create", "--label", f"who={prefix}", f"{prefix}vol")
    both(d, "volume", "prune", "-f", "--filter", "label=nobody")
    pair(d, "volume", "prune", "-a", "-f", "--filter", "label=who=NAME")
    both(d, "image", "prune", "-f")
    # import
    rootfs = tmp_path / "rootfs.tar"
    d.docker("export", "-o", str(rootfs), "box")
    pair(d, "import", "-m", "imported", str(rootfs), "NAMEimported:1")
    both(d, "images", "--format", "{{.Repository}}:{{.Tag}}")
    # attach: to a container that has finished, the output and the end
    for prefix, wait in (("d-", 1), ("m-", 3)):  # matou's turn comes a second later
        d.docker("run", "-d", "--name", f"{prefix}said", "busybox", "sh", "-c",
                 f"sleep {wait}; echo said; exit 3")
    pair(d, "attach", "NAMEsaid")  # waits for the end: its output and exit code
    pair(d, "attach", "NAMEsaid")  # stopped now: refused, as the docker CLI does
    pair(d, "logs", "-f", "NAMEsaid")  # follows until the end (here: already)
    both(d, "logs", "-t", "--tail", "1", "d-said")
    for since in ("10m", "1h5m", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(
            time.time() - 600)), time.strftime("%Y-%m-%d"), "0", "bogus"):
        both(d, "logs", "--since", since, "d-said")
    both(d, "logs", "--until", "10m", "d-said")  # before it ran: nothing
    until = str(int(time.time()) + 1)
    both(d, "events", "--since", "0", "--until", until, "--format",
         "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    both(d, "events", "--since", "0", "--until", until, "-f", "type=network",
         "--format", "{{json .Actor.Attributes}}")


def test_signals_are_proxied(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    p = subprocess.Popen([MATOU, "-H", d.host, "run", "--rm", "busybox", "sh", "-c",
                          'trap "echo got TERM; exit 9" TERM; echo ready; '
                          "while true; do sleep 0.1; done"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        p.terminate()  # matou passes it on (--sig-proxy), the container answers
        assert p.wait(timeout=30) == 9
        assert p.stdout.read() == "got TERM\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_side_by_side_registry(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    """push, pull, login, logout, search against a matou-registry with token auth."""
    import bcrypt

    from tests.integration.test_registry import _serve

    (tmp_path / "htpasswd").write_text(
        "peer:" + bcrypt.hashpw(b"peerpass", bcrypt.gensalt(5)).decode() + "\n")
    served = _serve(tmp_path, "--htpasswd", str(tmp_path / "htpasswd"))
    reg = next(served)
    try:
        d = daemon
        d.docker("load", "-i", str(busybox_archive))
        for prefix in ("d-", "m-"):
            d.docker("tag", "busybox", f"{reg}/{prefix}bb:1")
        env = {"DOCKER_CONFIG": str(tmp_path / "cfg")}

        def run(cli: str, *args: str, stdin: str | None = None) -> tuple[str, int]:
            p = subprocess.run([cli, "-H", d.host, *args], capture_output=True, text=True,
                               timeout=60, input=stdin,
                               env={**os.environ, **env})
            return p.stdout, p.returncode

        for cli, prefix in (("docker", "d-"), (MATOU, "m-")):
            out, code = run(cli, "push", f"{reg}/{prefix}bb:1")
            assert code != 0, out  # not logged in
            out, code = run(cli, "login", "-u", "peer", "--password-stdin", reg,
                            stdin="peerpass\n")
            assert (out, code) == ("Login Succeeded\n", 0)
            out, code = run(cli, "push", f"{reg}/{prefix}bb:1")
            assert code == 0 and "1: digest: sha256:" in out, out
            d.docker("rmi", f"{reg}/{prefix}bb:1")
            out, code = run(cli, "pull", f"{reg}/{prefix}bb:1")
            assert code == 0 and f"Status: Downloaded newer image for {reg}/{prefix}bb:1" \
                in out, out
            out, code = run(cli, "logout", reg)
            assert (out, code) == (f"Removing login credentials for {reg}\n", 0)
        # search answers the same rows for both
        dout, _ = run("docker", "search", f"{reg}/bb")
        mout, _ = run(MATOU, "search", f"{reg}/bb")
        assert _norm(dout) == _norm(mout)
    finally:
        served.close()


def test_side_by_side_usage_info_streams(daemon: Daemon, busybox_archive: Path) -> None:
    """Bad command lines (docker's first line and exit code), `info` whole, and the
    commands that stream: `logs -f` and `events` while things happen, then system prune."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    for argv in (["ps", "--bogus"], ["ps", "-x"], ["ps", "-n"], ["ps", "-n", "x"],
                 ["rm"], ["logs"], ["version", "x"], ["rename", "a"], ["commit"], ["run"],
                 ["exec", "x"], ["images", "a", "b", "c"], ["rm", "--force=maybe", "x"],
                 ["container", "ls", "--bogus"], ["nosuchcommand"],
                 ["run", "--ipc", "bogus", "busybox", "true"],
                 ["create", "--ipc", "bogus", "busybox", "true"]):
        got = []
        for cli in ("docker", MATOU):
            p = subprocess.run([cli, "-H", d.host, *argv], capture_output=True, text=True,
                               timeout=60)
            first = p.stderr.replace("docker", "matou").splitlines()[0]
            got.append((first.replace(MATOU, "matou"), p.returncode))
        assert got[0] == got[1], argv
    client_version = re.compile(r"^ Version: .*$", re.M)
    infos = [client_version.sub("", subprocess.run(
        [cli, "-H", d.host, "info"], capture_output=True, text=True, timeout=60).stdout)
        for cli in ("docker", MATOU)]
    assert infos[0] == infos[1]
    client_build = re.compile(r"^ (Version|Go version|Git commit|Built): .*$", re.M)
    versions = [client_build.sub("", subprocess.run(
        [cli, "-H", d.host, "version"], capture_output=True, text=True, timeout=60).stdout)
        for cli in ("docker", MATOU)]
    assert versions[0] == versions[1]
    # logs -f and events follow what happens while they run
    since = str(int(time.time()) - 1)
    followers = {}
    for cli in ("docker", MATOU):
        followers[cli] = subprocess.Popen(
            [cli, "-H", d.host, "events", "--since", since, "-f", "container=ticker",
             "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
            stdout=subprocess.PIPE, text=True)
    d.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
             "for i in 1 2 3 4; do echo tick $i; sleep 0.3; done; echo done >&2")
    logs = [subprocess.Popen([cli, "-H", d.host, "logs", "-f", "ticker"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cli in ("docker", MATOU)]
    try:
        outs = [f.communicate(timeout=60) for f in logs]
        assert outs[0] == outs[1] == ("tick 1\ntick 2\ntick 3\ntick 4\n", "done\n")
        d.docker("rm", "ticker")
        time.sleep(0.5)
        for follower in followers.values():
            follower.terminate()
        events = [f.communicate(timeout=30)[0] for f in followers.values()]
        assert events[0] == events[1]
        assert "container destroy ticker" in events[1], events[1]
    finally:
        for proc in [*logs, *followers.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # system prune: stopped containers, unused networks, dangling images
    for cli, prefix in (("docker", "d-"), (MATOU, "m-")):
        d.docker("create", "--name", f"{prefix}stopped", "busybox", "true")
        d.docker("network", "create", f"{prefix}unused")
        p = subprocess.run([cli, "-H", d.host, "system", "prune", "-f"], capture_output=True,
                           text=True, timeout=60)
        got.append((IDS.sub("ID", p.stdout.replace(prefix, "")), p.returncode))
    assert got[-2] == got[-1]
    assert "unused" in got[-1][0]


@pytest.mark.skipif(not shutil.which("script"), reason="no script(1)")
def test_pull_and_push_progress_as_docker_draws_it(daemon: Daemon, tmp_path: Path) -> None:
    """On a terminal, each layer keeps a line that is redrawn with a bar; elsewhere one
    line per status. Both CLIs on the same daemon must write the same bytes (each pushes
    to a registry of its own: on one registry the second push would mount the layer)."""
    from tests.integration.test_registry import _serve

    (tmp_path / "d").mkdir()
    (tmp_path / "m").mkdir()
    served = [_serve(tmp_path / "d"), _serve(tmp_path / "m")]
    regs = {"docker": next(served[0]), MATOU: next(served[1])}
    try:
        d = daemon
        (tmp_path / "layer").mkdir()
        (tmp_path / "layer" / "blob").write_bytes(os.urandom(3_000_000))
        subprocess.run(["tar", "-C", str(tmp_path / "layer"), "-cf", str(tmp_path / "l.tar"),
                        "blob"], check=True, timeout=60)
        d.docker("import", str(tmp_path / "l.tar"), "progsrc:1")
        drawn: dict[str, list[str]] = {"docker": [], MATOU: []}

        def draw(cli: str, verb: str) -> None:
            typescript = tmp_path / f"{len(drawn[cli])}{verb}.typescript"
            subprocess.run(["script", "-qec", f"stty cols 150; {cli} -H {d.host} {verb} "
                            f"{regs[cli]}/prog:1", str(typescript)], check=True,
                           timeout=120, stdout=subprocess.DEVNULL)
            text = typescript.read_bytes().decode(errors="replace").replace(regs[cli], "REG")
            drawn[cli].append("".join(text.splitlines(keepends=True)[1:-2]))

        for cli, reg in regs.items():
            d.docker("tag", "progsrc:1", f"{reg}/prog:1")
            draw(cli, "push")
            piped = subprocess.run([cli, "-H", d.host, "push", f"{reg}/prog:1"],
                                   capture_output=True, text=True, timeout=120)
            drawn[cli].append(piped.stdout.replace(reg, "REG"))
        d.docker("rmi", "progsrc:1", *(f"{reg}/prog:1" for reg in regs.values()))
        for cli, reg in regs.items():  # each pull downloads: the layer went with the rmi
            draw(cli, "pull")
            d.docker("rmi", f"{reg}/prog:1")
        push, piped, pull = drawn[MATOU]
        assert "\x1b[1A\x1b[2K\r" in pull and ": Downloading [=" in pull, pull
        assert "Pull complete" in pull and ": Pushed" in push, push
        assert ": Pushing [=" in push, push
        assert "Layer already exists" in piped and "\x1b" not in piped, piped
        # the byte counts of the bar depend on how the network cut the stream
        redraws = re.compile(r"\x1b\[\d+A\x1b\[2K\r[0-9a-f]{12}: Downloading [^\r]*\r\x1b\[\d+B")
        assert [redraws.sub("", x) for x in drawn["docker"]] == \
            [redraws.sub("", x) for x in drawn[MATOU]]
    finally:
        for s in served:
            s.close()


RUN_FLAGS = [
    "-e", "A=1", "-w", "/tmp", "-u", "1:2", "-h", "hn", "--domainname", "dn",
    "--entrypoint", "sh", "-l", "a=b", "--label", "c=d", "--stop-signal", "SIGUSR1",
    "--stop-timeout", "3", "--expose", "90", "-p", "127.0.0.1:8080:80", "-P",
    "-v", "/anon", "-v", "named:/named:ro", "--tmpfs", "/run:size=1m",
    "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
    "--mount", "type=volume,source=mv,target=/mv,readonly,volume-nocopy",
    "--ulimit", "nofile=123:456", "--device", "/dev/zero:/dev/myzero:r",
    "--sysctl", "net.ipv4.ip_forward=1", "--dns", "10.0.0.1", "--dns-search", "example.test",
    "--dns-option", "ndots:2", "--add-host", "x:1.2.3.4", "--health-cmd", "true",
    "--health-interval", "1s", "--health-retries", "2", "--health-timeout", "2s",
    "--health-start-period", "3s", "--shm-size", "32m", "-m", "100m", "--memory-swap", "200m",
    "--memory-reservation", "50m", "--cpu-shares", "512", "--cpuset-cpus", "0", "--cpus", "1.5",
    "--pids-limit", "50", "--oom-score-adj", "100", "--group-add", "10", "--cap-add",
    "NET_ADMIN", "--cap-drop", "MKNOD", "--read-only", "--security-opt", "no-new-privileges",
    "--init", "--restart", "on-failure:3", "--ipc", "shareable", "--log-opt", "max-size=1m",
    "--cgroup-parent", "mtparent", "--cgroupns", "private", "--userns", "host",
    "--blkio-weight", "300", "-i", "-t",
    *(["--device-read-bps", "/dev/loop0:1mb", "--device-write-iops", "/dev/loop0:50"]
      if os.path.exists("/dev/loop0") else [])]


def test_run_flags_make_the_same_container(daemon: Daemon, busybox_archive: Path) -> None:
    """`create` with the flags users reach for, by both CLIs: the daemon must be asked for
    the same container (Config and HostConfig compared field by field)."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    seen = []
    for cli, prefix in (("docker", "d-"), (MATOU, "m-")):
        subprocess.run([cli, "-H", d.host, "create", "--name", f"{prefix}flags", *RUN_FLAGS,
                        "busybox", "-c", "true"], check=True, capture_output=True,
                       timeout=60)
        record = json.loads(d.docker("inspect", f"{prefix}flags").stdout)[0]
        seen.append(record)
    for part, keys in (
            ("Config", ["Hostname", "Domainname", "User", "Env", "Cmd", "Entrypoint",
                        "WorkingDir", "Labels", "StopSignal", "StopTimeout", "Healthcheck",
                        "ExposedPorts", "Volumes", "Tty", "OpenStdin", "StdinOnce",
                        "AttachStdin", "AttachStdout", "AttachStderr"]),
            ("HostConfig", ["Binds", "PortBindings", "PublishAllPorts", "Tmpfs", "Mounts",
                            "Ulimits", "Devices", "Sysctls", "Dns", "DnsSearch",
                            "DnsOptions", "ExtraHosts", "ShmSize", "Memory", "MemorySwap",
                            "MemoryReservation", "CpuShares", "CpusetCpus", "NanoCpus",
                            "PidsLimit", "OomScoreAdj", "GroupAdd", "CapAdd", "CapDrop",
                            "ReadonlyRootfs", "SecurityOpt", "Init", "RestartPolicy",
                            "IpcMode", "LogConfig", "NetworkMode", "CgroupParent",
                            "CgroupnsMode", "UsernsMode", "BlkioWeight",
                            "BlkioDeviceReadBps", "BlkioDeviceWriteIOps"])):
        for key in keys:
            assert seen[0][part].get(key) == seen[1][part].get(key), (part, key)


def test_contexts_shared_with_the_docker_cli(daemon: Daemon, busybox_archive: Path,
                                             tmp_path: Path) -> None:
    """docker's context store: a context made by either CLI is listed, inspected and
    used by both; `context use` switches both; --context with -H is refused."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    d.docker("run", "-d", "--name", "ctxbox", "busybox", "sleep", "300")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "MATOU_HOST",
                                                           "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(tmp_path / "cfg")

    def run(cli: str, *args: str) -> tuple[str, str, int]:
        p = subprocess.run([cli, *args], capture_output=True, text=True, timeout=60, env=env)
        return p.stdout, p.stderr, p.returncode

    assert run("docker", "context", "create", "dctx", "--description", "by docker",
               "--docker", f"host={d.host}")[2] == 0
    assert run(MATOU, "context", "create", "mctx", "--description", "by matou",
               "--docker", f"host={d.host}")[:3:2] == ("mctx\n", 0)
    env["DOCKER_HOST"] = d.host  # the default context's endpoint, the same for both
    for args in (["context", "ls"], ["context", "inspect", "dctx", "mctx"],
                 ["context", "ls", "-q"], ["context", "show"]):
        assert run("docker", *args)[:3:2] == run(MATOU, *args)[:3:2], args
    del env["DOCKER_HOST"]
    for cli, ctx in (("docker", "mctx"), (MATOU, "dctx")):
        out, _, code = run(cli, "--context", ctx, "ps", "--format", "{{.Names}}")
        assert (out, code) == ("ctxbox\n", 0), cli
    run(MATOU, "context", "use", "dctx")
    assert run("docker", "context", "show")[0] == "dctx\n"
    assert run("docker", "ps", "--format", "{{.Names}}")[0] == \
        run(MATOU, "ps", "--format", "{{.Names}}")[0] == "ctxbox\n"
    refused = run(MATOU, "-H", d.host, "--context", "dctx", "ps")
    assert refused[2] == 1 and "conflicting options" in refused[1]
    assert run(MATOU, "context", "rm", "dctx")[2] == 1  # in use
    assert run(MATOU, "context", "rm", "-f", "dctx", "mctx")[2] == 0
    assert run("docker", "context", "ls", "-q")[0] == "default\n"


def test_network_create_flags_as_docker_sends_them(daemon: Daemon) -> None:
    """`network create` with both address families, gateways, ranges and auxiliary
    addresses paired to their subnets: the same network by either CLI."""
    d = daemon
    seen = []
    for cli, n in (("docker", 1), (MATOU, 2)):
        subprocess.run([cli, "-H", d.host, "network", "create", "--ipv6",
                        "--subnet", f"10.25{n}.0.0/24", "--subnet", f"fd42:25{n}::/64",
                        "--gateway", f"fd42:25{n}::fe", "--gateway", f"10.25{n}.0.254",
                        "--ip-range", f"10.25{n}.0.128/25", "--aux-address",
                        f"router=10.25{n}.0.9", "--label", "k=v", "-o",
                        "com.docker.network.driver.mtu=1400", f"net{n}"],
                       check=True, capture_output=True, timeout=60)
        raw = d.docker("network", "inspect", "-f", "{{json .IPAM}}|{{.EnableIPv6}}|"
                       "{{json .Labels}}|{{json .Options}}", f"net{n}").stdout
        seen.append(raw.replace(f"25{n}", "25N").replace(f"net{n}", "netN"))
    assert seen[0] == seen[1]
    assert '"Gateway":"10.25N.0.254"' in seen[1] and "true" in seen[1]
