"""OCI hooks: each runs with the container state as JSON on stdin, its own args and env,
and an optional timeout; a hook that fails or times out fails the phase that ran it."""

from __future__ import annotations

import json
import os
import subprocess

from matou.errors import FailedPrecondition
from matou.oci.runtime_spec import Hook
from matou.oci.state import State


def run_all(hooks: tuple[Hook, ...], state: State, phase: str) -> list[str]:
    """Run every hook even when some fail (poststart, poststop: the spec wants a warning
    and the rest of the hooks); returns the failures."""
    failures = []
    payload = json.dumps(state.to_json()).encode()
    for i, hook in enumerate(hooks):
        try:
            _run_one(i, hook, payload, state, phase)
        except FailedPrecondition as e:
            failures.append(str(e))
    return failures


def run(hooks: tuple[Hook, ...], state: State, phase: str) -> None:
    """Run the hooks in order; the first failure stops them and fails the phase."""
    payload = json.dumps(state.to_json()).encode()
    for i, hook in enumerate(hooks):
        _run_one(i, hook, payload, state, phase)


def _run_one(i: int, hook: Hook, payload: bytes, state: State, phase: str) -> None:
    argv = list(hook.args) or [hook.path]
    try:
        proc = subprocess.Popen(
            argv,
            executable=hook.path,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(e.split("=", 1) for e in hook.env if "=" in e),
            close_fds=True,
            cwd=state.bundle if os.path.isdir(state.bundle) else "/",
        )
    except OSError as e:
        raise FailedPrecondition(f"{phase} hook #{i} `{hook.path}`: {e.strerror}") from e
    try:
        _, err = proc.communicate(payload, timeout=hook.timeout)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.wait()
        raise FailedPrecondition(
            f"{phase} hook #{i} `{hook.path}`: timed out after {hook.timeout}s") from e
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()
        raise FailedPrecondition(
            f"{phase} hook #{i} `{hook.path}`: exit status {proc.returncode}"
            + (f": {detail}" if detail else ""))
