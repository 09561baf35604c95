"""Image references (``busybox``, ``localhost:5000/a/b:tag@sha256:…``) and Docker's normalisation.

Follows github.com/distribution/reference (``ParseNormalizedNamed``, ``TagNameOnly``,
``FamiliarString``); its grammar, quoted from regexp.go::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain '/'] remote-name
    domain     := host [':' port-number]
    host       := domain-name | IPv6address      (IPv6 in brackets)
    remote-name := path-component ['/' path-component]*
    path-component := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [\\w][\\w.-]{0,127}

Normalisation: the first component is a domain if it contains "." or ":", is
"localhost", or has an uppercase letter (Docker Hub namespaces are lowercase); a
single-component name is always on Docker Hub. Otherwise the domain is docker.io
(and "index.docker.io" is rewritten to it), and a one-component Docker Hub path gets
the "library/" prefix. Pure: imports only the stdlib and matou.errors.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from matou.errors import InvalidArgument
from matou.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_PATH_LENGTH = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# re.ASCII: Go's \w is [0-9A-Za-z_], Python's would take any Unicode letter.
_REFERENCE_RE = re.compile(
    rf"((?:{_DOMAIN}/)?{_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_REMOTE_NAME})", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_ID_LIKE_RE = re.compile(r"(?:sha256:[a-f0-9]{64}|[a-f0-9]{12,64})")


class Reference(NamedTuple):
    domain: str
    path: str
    tag: str | None
    digest: Digest | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: Docker Hub's domain and "library/" dropped."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return rest if "/" not in rest else self.path

    def _with_name(self, name: str) -> str:
        out = name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self._with_name(self.name)

    def familiar(self) -> str:
        return self._with_name(self.familiar_name)

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format '{tag}'")
        return self._replace(tag=tag)

    def with_digest(self, digest: Digest | str) -> Reference:
        d = digest if isinstance(digest, Digest) else Digest.parse(digest)
        return self._replace(digest=d)


def _split_docker_domain(text: str) -> tuple[str, str]:
    first, slash, rest = text.partition("/")
    if not slash:
        # A lone component is a Docker Hub name even when it looks like a host
        # ("localhost", "example.com:5000" is the image example.com, tag 5000).
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + text
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, text
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse(text: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse a familiar or canonical reference; a bare name gets ``default_tag``.

    No tag is added when the reference carries a digest; one carrying both keeps both.
    """
    if not text:
        raise InvalidArgument(
            "invalid reference format: repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidArgument(
            f"invalid reference format: repository name ({remote}) must be lowercase")
    m = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if m is None:
        raise InvalidArgument(f"invalid reference format '{text}'")
    name, tag, digest_text = m.groups()
    n = _NAME_RE.fullmatch(name)
    if n is None or n.group(1) is None:  # cannot happen: name always carries the domain
        raise InvalidArgument(f"invalid reference format '{text}'")
    path = n.group(2)
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgument(f"invalid reference format '{text}': repository name must not "
                              f"be more than {MAX_PATH_LENGTH} characters")
    digest = None
    if digest_text is not None:
        try:
            digest = Digest.parse(digest_text)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid reference format '{text}': {e}") from e
    if tag is None and digest is None:
        tag = default_tag
    return Reference(n.group(1), path, tag, digest)


def is_image_id_like(text: str) -> bool:
    """Whether ``text`` could be an image ID: full (bare or ``sha256:``) or a 12+ hex prefix.

    A 12+ hex string is also a valid repository name; callers look IDs up first.
    """
    return _ID_LIKE_RE.fullmatch(text) is not None
