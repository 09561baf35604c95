"""The Engine API from the client's side: HTTP/1.1 over a unix socket or TCP (TLS with
client certificates), version negotiation through /_ping, Docker's error shape turned into
one exception, streamed bodies, and the hijacked connection of attach and exec.

Only the standard library, and little of it: no http.client (it imports the email
package), the C socket and JSON modules under socket and json (whose imports pull in re
and enum), ssl only for TLS. `matou version` must start about as fast as a bare
interpreter.

May import: errors (and stdlib).
"""

from __future__ import annotations

import _socket
import os

from matou.client import fastjson as json

TYPE_CHECKING = False  # not typing's: the CLI starts faster
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Iterable, Iterator
    from typing import Any

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


class Response:
    """An HTTP/1.1 response read straight off the socket (http.client would import the
    email package: a third of the CLI's start-up): status, headers, and a body read
    whole, in pieces, or as it streams (Content-Length, chunked, or to EOF)."""

    def __init__(self, sock: socket.socket | _socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in lines[1:] if line)}
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self.left = int(length) if length is not None and not self.chunked else -1
        self.done = self.left == 0
        self.read_all = b""

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError("the daemon closed the connection")
        head, _, self.buf = self.buf.partition(marker)
        return head

    def read1(self, n: int = 65536) -> bytes:
        """Some of the body (b"" at its end)."""
        if self.done:
            return b""
        if self.chunked:
            if self.left <= 0:
                size = int(self._until(b"\r\n").split(b";")[0] or b"0", 16)
                if size == 0:
                    self.done = True
                    return b""
                self.left = size
            while not self.buf and self._fill():
                pass
            take = self.buf[: min(n, self.left)]
            self.buf = self.buf[len(take):]
            self.left -= len(take)
            if self.left == 0:
                self._until(b"\r\n")
            if not take:
                self.done = True
            return take
        if not self.buf and not self._fill():
            self.done = True
            return b""
        take = self.buf[: n if self.left < 0 else min(n, self.left)]
        self.buf = self.buf[len(take):]
        if self.left >= 0:
            self.left -= len(take)
            self.done = self.left == 0
        return take

    def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return self.read1(n)
        out = []
        while chunk := self.read1():
            out.append(chunk)
        return b"".join(out)

    def close(self) -> None:
        self.sock.close()


def host_from_env(flag: str | None) -> str:
    return flag or os.environ.get("MATOU_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def tls_from_env(tls: bool, verify: bool, ca: str | None, cert: str | None,
                 key: str | None) -> ssl.SSLContext | None:
    """docker's TLS flags and DOCKER_TLS_VERIFY / DOCKER_CERT_PATH."""
    verify = verify or bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not (tls or verify):
        return None
    import ssl  # only now: it costs a sixth of the start-up
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
        self.context = "default"  # the docker context it was chosen by

    # -- connections ---------------------------------------------------------------------

    def _connect(self, timeout: float | None = None) -> socket.socket | _socket.socket:
        t = timeout if timeout is not None else self.timeout
        if self.host.startswith("unix://"):
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                s.settimeout(t)
                s.connect(self.host[len("unix://"):])
            except OSError:
                s.close()
                raise
            return s
        if self.host.startswith(("tcp://", "http://", "https://")):
            hostport = self.host.split("://", 1)[1].rstrip("/")
            h, _, port = hostport.rpartition(":")
            h = h.strip("[]")
            tls = self.tls is not None or self.host.startswith("https://")
            address = (h, int(port or (2376 if tls else 2375)))
            if not tls:
                return _tcp(address, t)
            import socket
            import ssl

            ctx = self.tls or ssl.create_default_context()
            return ctx.wrap_socket(socket.create_connection(address, timeout=t),
                                   server_hostname=h)
        raise Unreachable(f"unsupported host {self.host!r}: use unix:///PATH or tcp://HOST:PORT")

    def _send(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str], timeout: float | None = None) -> Response:
        try:
            s = self._connect(timeout)
        except OSError as e:
            raise self._unreachable(e) from e
        head = [f"{method} {path} HTTP/1.1", "Host: localhost", "User-Agent: matou",
                "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body or b'')}")
        try:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
            return Response(s)
        except OSError as e:
            s.close()
            raise self._unreachable(e) from e

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
        r = self._send("GET", "/_ping", None, {})
        r.read()
        r.close()
        server = r.getheader("API-Version") or CLIENT_API
        self.version = min((server, CLIENT_API), key=lambda v: tuple(map(int, v.split("."))))
        return self.version

    def _path(self, path: str, query: dict[str, Any] | None) -> str:
        q = {k: (json.dumps(v) if isinstance(v, dict) else
                 ("1" if v is True else "0" if v is False else str(v)))
             for k, v in (query or {}).items() if v is not None}
        # unversioned unless negotiated: the daemon answers in its own newest version,
        # which saves the /_ping round trip on every command (docker pings first)
        prefix = f"/v{self.version}" if self.version else ""
        return f"{prefix}{path}" + (f"?{urlencode(q.items())}" if q else "")

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, query: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                raw_body: bytes | None = None, stream: bool = False,
                timeout: float | None = None) -> Response:
        """Send a request; an error status raises ApiError. With ``stream`` the response is
        returned unread (the caller reads and closes it)."""
        data = raw_body if raw_body is not None else (
            json.dumps(body).encode() if body is not None else None)
        hdrs = dict(headers or {})
        if body is not None and raw_body is None:
            hdrs.setdefault("Content-Type", "application/json")
        r = self._send(method, self._path(path, query), data, hdrs, timeout)
        if r.status >= 400:
            text = r.read()
            r.close()
            try:
                message = json.loads(text).get("message") or text.decode()
            except ValueError:
                message = text.decode(errors="replace").strip()
            raise ApiError(r.status, message)
        if not stream:
            r.read_all = b"" if method == "HEAD" else r.read()
            r.close()
        return r

    def json(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        data = self.request(method, path, query, body).read_all
        return json.loads(data) if data.strip() else None

    def json_stream(self, r: Response) -> Iterator[dict[str, Any]]:
        """The JSON lines of a progress or events stream."""
        buf = b""
        while chunk := r.read1(65536):
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if line.strip():
                    yield json.loads(line)
        if buf.strip():
            yield json.loads(buf)

    def hijack(self, path: str, query: dict[str, Any] | None = None,
               body: Any = None) -> socket.socket | _socket.socket:
        """POST with Connection: Upgrade and return the raw, bidirectional stream (attach,
        exec start). The head is read byte by byte: nothing of the stream is buffered."""
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {self._path(path, query)} HTTP/1.1\r\nHost: localhost\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        try:
            s = self._connect()
            s.settimeout(None)
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


def _tcp(address: tuple[str, int], timeout: float | None) -> _socket.socket:
    """socket.create_connection on the C module: each address in turn, the first that
    answers."""
    error: OSError = OSError(f"cannot resolve {address[0]}")
    for family, kind, proto, _, where in _socket.getaddrinfo(*address, 0,
                                                             _socket.SOCK_STREAM):
        s = _socket.socket(family, kind, proto)
        try:
            s.settimeout(timeout)
            s.connect(where)
            return s
        except OSError as e:
            s.close()
            error = e
    raise error


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encoding (urllib.parse's would import ipaddress and more: a tenth of the
    CLI's start)."""
    ok = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in text.encode())


def urlencode(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)


def quote_ref(ref: str) -> str:
    return quote(ref, safe="/:@")
