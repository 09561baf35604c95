"""How container ages read in `docker ps` (Docker's units.HumanDuration)."""

from __future__ import annotations

import pytest

from matou.oci.timestamps import human_duration


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (14 * 86400, "2 weeks"),
    (60 * 86400, "2 months"), (730 * 86400, "2 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_detach_keys_parse_and_scan() -> None:
    from matou.api.containers import detach_keys, scan_detach
    from matou.errors import InvalidArgument

    assert detach_keys(None) == b"\x10\x11" and detach_keys("") == b"\x10\x11"
    assert detach_keys("ctrl-a,x,ctrl-@") == b"\x01x\x00"
    for bad in ("ctrl-", "ctrl-ab", "abc", "ctrl-1"):
        with pytest.raises(InvalidArgument):
            detach_keys(bad)
    keys = b"\x10\x11"
    assert scan_detach(b"abc", keys) == (b"abc", b"", False)
    assert scan_detach(b"abc\x10", keys) == (b"abc", b"\x10", False)  # held: may be a start
    assert scan_detach(b"\x10x", keys) == (b"\x10x", b"", False)     # was not
    assert scan_detach(b"ab\x10\x11cd", keys) == (b"ab", b"", True)


def test_unframe_joins_payloads_across_reads() -> None:
    import struct

    from matou.api.containers import _frame_stdout, _Unframe

    framed = _frame_stdout(b"hello ") + struct.pack(">BxxxI", 2, 5) + b"world"
    u = _Unframe()
    assert u(framed[:3]) + u(framed[3:12]) + u(framed[12:]) == b"hello world"
