"""The runtime's log: runc's `--log FILE --log-format json|text`, one line per message.

containerd reads the last `{"level":"error","msg":…}` line of this file to explain a failure.
"""

from __future__ import annotations

import json
import os
import sys

from matou.oci.timestamps import format as timestamp

_path: str | None = None
_json = False
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json, _debug
    _path, _json, _debug = path or None, fmt == "json", debug


def _emit(level: str, msg: str) -> None:
    if _json:
        line = json.dumps({"level": level, "msg": msg, "time": timestamp()})
    else:
        line = f'time="{timestamp()}" level={level} msg="{msg}"'
    if _path:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    sys.stderr.write(line + "\n")


def error(msg: str) -> None:
    _emit("error", msg)
    if _path:  # runc prints the error on stderr too, for humans
        sys.stderr.write(msg + "\n")


def warning(msg: str) -> None:
    _emit("warning", msg)


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", msg)
