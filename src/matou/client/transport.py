"""The Engine API from the client's side: HTTP/1.1 over a unix socket or TCP (TLS with
client certificates), version negotiation through /_ping, Docker's error shape turned into
one exception, streamed bodies, and the hijacked connection of attach and exec.

Only the standard library (http.client, ssl, socket): `matou version` must start about as
fast as a bare interpreter.

May import: errors (and stdlib).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

CLIENT_API = "1.50"
DEFAULT_HOST = "unix:///run/matou/matou.sock"


class ApiError(Exception):
    """An error answer of the daemon: its status and message (Docker's {"message"})."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unreachable(Exception):
    """The daemon could not be reached; the text says how to fix it."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def host_from_env(flag: str | None) -> str:
    return flag or os.environ.get("MATOU_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def tls_from_env(tls: bool, verify: bool, ca: str | None, cert: str | None,
                 key: str | None) -> ssl.SSLContext | None:
    """docker's TLS flags and DOCKER_TLS_VERIFY / DOCKER_CERT_PATH."""
    verify = verify or bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not (tls or verify):
        return None
    certs = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ca = ca or os.path.join(certs, "ca.pem")
    cert = cert or os.path.join(certs, "cert.pem")
    key = key or os.path.join(certs, "key.pem")
    ctx = ssl.create_default_context(cafile=ca if verify and os.path.exists(ca) else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if os.path.exists(cert) and os.path.exists(key):
        ctx.load_cert_chain(cert, key)
    return ctx


class Client:
    def __init__(self, host: str, tls: ssl.SSLContext | None = None,
                 timeout: float | None = None) -> None:
        self.host = host
        self.tls = tls
        self.timeout = timeout
        self.version = ""

    # -- connections ---------------------------------------------------------------------

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        t = timeout if timeout is not None else self.timeout
        if self.host.startswith("unix://"):
            return _UnixConnection(self.host[len("unix://"):], t)
        if self.host.startswith(("tcp://", "http://", "https://")):
            hostport = self.host.split("://", 1)[1].rstrip("/")
            h, _, port = hostport.rpartition(":")
            if self.tls is not None or self.host.startswith("https://"):
                return http.client.HTTPSConnection(h.strip("[]"), int(port or 2376),
                                                   timeout=t, context=self.tls)
            return http.client.HTTPConnection(h.strip("[]"), int(port or 2375), timeout=t)
        raise Unreachable(f"unsupported host {self.host!r}: use unix:///PATH or tcp://HOST:PORT")

    def _unreachable(self, e: OSError) -> Unreachable:
        where = self.host
        if isinstance(e, PermissionError):
            return Unreachable(
                f"permission denied while trying to connect to the daemon socket at {where}: "
                "add yourself to the docker group (sudo usermod -aG docker $USER) and log in "
                "again")
        return Unreachable(f"Cannot connect to the matou daemon at {where}. Is the daemon "
                           "running? (is DOCKER_HOST or MATOU_HOST set to where it listens?)")

    def negotiate(self) -> str:
        """The API version both sides speak: the daemon's, capped at ours."""
        if self.version:
            return self.version
        conn = self._connection()
        try:
            conn.request("GET", "/_ping")
            r = conn.getresponse()
            r.read()
        except OSError as e:
            raise self._unreachable(e) from e
        finally:
            conn.close()
        server = r.getheader("API-Version") or CLIENT_API
        self.version = min((server, CLIENT_API), key=lambda v: tuple(map(int, v.split("."))))
        return self.version

    def _path(self, path: str, query: dict[str, Any] | None) -> str:
        q = {k: (json.dumps(v) if isinstance(v, dict) else
                 ("1" if v is True else "0" if v is False else str(v)))
             for k, v in (query or {}).items() if v is not None}
        return f"/v{self.negotiate()}{path}" + (f"?{urlencode(q, doseq=False)}" if q else "")

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, query: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                raw_body: bytes | None = None, stream: bool = False,
                timeout: float | None = None) -> http.client.HTTPResponse:
        """Send a request; an error status raises ApiError. With ``stream`` the response is
        returned unread (the caller reads and closes it)."""
        conn = self._connection(timeout)
        data = raw_body if raw_body is not None else (
            json.dumps(body).encode() if body is not None else None)
        hdrs = dict(headers or {})
        if body is not None and raw_body is None:
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, self._path(path, query), body=data, headers=hdrs)
            r = conn.getresponse()
        except OSError as e:
            conn.close()
            raise self._unreachable(e) from e
        if r.status >= 400:
            text = r.read()
            conn.close()
            try:
                message = json.loads(text).get("message") or text.decode()
            except ValueError:
                message = text.decode(errors="replace").strip()
            raise ApiError(r.status, message)
        if not stream:
            r.read_all = r.read()  # type: ignore[attr-defined]
            conn.close()
        return r

    def json(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        r = self.request(method, path, query, body)
        data: bytes = r.read_all  # type: ignore[attr-defined]
        return json.loads(data) if data.strip() else None

    def json_stream(self, r: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        """The JSON lines of a progress or events stream."""
        buf = b""
        while chunk := r.read1(65536) if hasattr(r, "read1") else r.read(65536):
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if line.strip():
                    yield json.loads(line)
        if buf.strip():
            yield json.loads(buf)

    def hijack(self, path: str, query: dict[str, Any] | None = None,
               body: Any = None) -> socket.socket:
        """POST with Connection: Upgrade and return the raw, bidirectional stream (attach,
        exec start). The head is read byte by byte: nothing of the stream is buffered."""
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {self._path(path, query)} HTTP/1.1\r\nHost: localhost\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        try:
            if self.host.startswith("unix://"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.host[len("unix://"):])
            else:
                conn = self._connection()
                conn.connect()
                assert conn.sock is not None
                s = conn.sock
            s.sendall(head + data)
            resp = b""
            while not resp.endswith(b"\r\n\r\n"):
                ch = s.recv(1)
                if not ch:
                    break
                resp += ch
        except OSError as e:
            raise self._unreachable(e) from e
        status = int(resp.split(b" ", 2)[1]) if resp.count(b" ") >= 2 else 0
        if status >= 400:
            body_len = 0
            for line in resp.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    body_len = int(line.split(b":")[1])
            text = b""
            while len(text) < body_len:
                chunk = s.recv(body_len - len(text))
                if not chunk:
                    break
                text += chunk
            s.close()
            try:
                message = json.loads(text).get("message") or text.decode()
            except ValueError:
                message = text.decode(errors="replace")
            raise ApiError(status, message)
        return s


def quote_ref(ref: str) -> str:
    return quote(ref, safe="/:@")
