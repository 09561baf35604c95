from __future__ import annotations

import signal

import pytest

from matou.errors import InvalidArgument
from matou.linux import caps
from matou.runtime.kill import parse_signal


def test_mask() -> None:
    assert caps.mask(["CAP_CHOWN", "CAP_KILL"], "x") == 1 | 1 << 5
    assert caps.mask(["cap_kill"], "x") == 1 << 5
    with pytest.raises(InvalidArgument, match="unknown capability 'CAP_NOPE'"):
        caps.mask(["CAP_NOPE"], "process.capabilities.bounding")


@pytest.mark.parametrize(("text", "sig"), [("9", 9), ("KILL", signal.SIGKILL),
                                           ("SIGTERM", signal.SIGTERM), ("hup", 1)])
def test_parse_signal(text: str, sig: int) -> None:
    assert parse_signal(text) == sig


@pytest.mark.parametrize("text", ["0", "999", "SIGNOPE", "-1"])
def test_bad_signal(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_signal(text)
