"""The entry point's help and dispatch, without a daemon."""

from __future__ import annotations

import pytest

from matou.cli.client import main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["-h"], []):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("Usage:  matou [OPTIONS] [COMMAND]")
        assert "Management Commands:\n  container " in out and "\n  run " in out


def test_management_help_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["container", "--help"]) == 0
    assert capsys.readouterr().out.startswith("Usage:  matou container COMMAND")
    for argv, first in ((["nosuch"], "matou: unknown command: matou nosuch"),
                        (["container", "nosuch"],
                         "matou: unknown command: matou container nosuch")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 1
        assert capsys.readouterr().err.splitlines()[0] == first
