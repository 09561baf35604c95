"""matou-registry's authentication: users from an htpasswd file (bcrypt), and either
Basic auth on every request or Docker's token flow — the registry answers 401 with
`WWW-Authenticate: Bearer realm=…,service=…,scope=…`, the client gets a token for that
scope from the realm (with Basic credentials), and presents it.

Tokens are the registry's own: `base64(JSON claims).base64(HMAC-SHA256)`, claims
{sub, access: [{type, name, actions}], exp}, signed with a secret made at start (so a
restart invalidates them; clients just ask again).

May import: errors (and bcrypt, stdlib).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any, NamedTuple

TOKEN_TTL = 300


class Access(NamedTuple):
    type: str
    name: str
    actions: tuple[str, ...]


def parse_scope(scope: str) -> list[Access]:
    """"repository:a/b:pull,push repository:c:pull" → Access records."""
    out = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            out.append(Access(kind, name, tuple(a for a in actions.split(",") if a)))
    return out


class Htpasswd:
    def __init__(self, path: str) -> None:
        self.users: dict[str, bytes] = {}
        with open(path) as f:
            for line in f:
                user, sep, hashed = line.strip().partition(":")
                if sep and user:
                    self.users[user] = hashed.encode()

    def check(self, user: str, password: str) -> bool:
        import bcrypt

        hashed = self.users.get(user)
        if hashed is None or not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
            return False
        try:
            return bool(bcrypt.checkpw(password.encode(), hashed))
        except ValueError:
            return False


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


class Tokens:
    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or os.urandom(32)

    def issue(self, subject: str, access: list[Access]) -> str:
        claims = {"sub": subject, "exp": int(time.time()) + TOKEN_TTL,
                  "access": [{"type": a.type, "name": a.name, "actions": list(a.actions)}
                             for a in access]}
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        sig = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
        return f"{body}.{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"

    def verify(self, token: str) -> dict[str, Any] | None:
        body, _, sig = token.partition(".")
        want = base64.urlsafe_b64encode(hmac.new(self.secret, body.encode(),
                                                 hashlib.sha256).digest()).decode().rstrip("=")
        if not hmac.compare_digest(sig, want):
            return None
        try:
            claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(
                body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        return claims if claims.get("exp", 0) > time.time() else None


def allowed(claims: dict[str, Any], name: str, action: str) -> bool:
    for a in claims.get("access") or []:
        if a.get("type") == "repository" and a.get("name") == name and \
                (action in a.get("actions", []) or "*" in a.get("actions", [])):
            return True
    return False
