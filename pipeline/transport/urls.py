"""Redis URLs: one server, a Sentinel group or a Cluster, parsed into a :class:`RedisTarget`.

The forms (``rediss`` instead of ``redis`` for TLS in each):

- ``redis://[[user]:password@]host[:port][/db]`` and ``unix:///path.sock?db=N``: one
  server (redis-py parses these itself, as before);
- ``redis+sentinel://[[user]:password@]h1:26379,h2:26379/<service>[/db]``: the primary
  of a Sentinel group, found through any of the listed sentinels. The userinfo
  authenticates to the primary; sentinels that ask for a password of their own take
  ``?sentinel_username=``/``?sentinel_password=``;
- ``redis+cluster://[[user]:password@]h1:7000,h2:7001``: a Redis Cluster, found from any
  of the seed nodes (no database number: a cluster has only database 0).

TLS options go in the query (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs``, ``ssl_check_hostname``), as redis-py takes them for ``rediss://``.
A malformed URL is a :class:`ValueError` whose message names the part at fault and never
quotes the password.

Why not redis-py's own parsing: ``redis.asyncio.from_url`` knows one host only; neither
its Sentinel nor its Cluster client reads a URL with several hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from redis.connection import parse_url

from pipeline.redaction import redact_detail, redact_url

Kind = Literal["single", "sentinel", "cluster"]

_SINGLE = ("redis", "rediss", "unix")
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
#: Every scheme livecoach accepts (the Faust transport registers the same ones).
SCHEMES = (*_SINGLE, *_SCHEMES)

_DEFAULT_PORT: dict[Kind, int] = {"single": 6379, "sentinel": 26379, "cluster": 6379}
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class RedisTarget:
    """Where a Redis URL points, and how to log in there."""

    kind: Kind
    #: The URL as configured (may hold a password: never log it, log ``redacted``).
    url: str = field(repr=False)
    #: Sentinels (``sentinel``) or seed nodes (``cluster``); empty for ``single``.
    nodes: tuple[tuple[str, int], ...] = ()
    #: The Sentinel service (master group) name.
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    #: TLS options from the query, as redis-py's keyword arguments.
    tls_options: tuple[tuple[str, Any], ...] = ()
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def auth_options(self) -> dict[str, Any]:
        """The keyword arguments of a redis-py connection to a data node."""
        options: dict[str, Any] = dict(self.tls_options)
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if self.tls and self.kind == "cluster":
            options["ssl"] = True
        return options

    def sentinel_options(self) -> dict[str, Any]:
        """The keyword arguments of a connection to a sentinel."""
        options: dict[str, Any] = dict(self.tls_options)
        if self.tls:
            options["ssl"] = True
        if self.sentinel_username is not None:
            options["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            options["password"] = self.sentinel_password
        return options


def _fail(url: str, problem: str) -> ValueError:
    return ValueError(f"{problem} in {redact_url(url)!r}")


def _node(url: str, text: str, kind: Kind) -> tuple[str, int]:
    if text.startswith("["):  # an IPv6 address: [::1]:7000
        host, _, tail = text[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise _fail(url, f"empty host in {text!r}")
    if not port_text:
        return host, _DEFAULT_PORT[kind]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(url, f"bad port {port_text!r} of host {host!r} (expected 1-65535)")
    return host, int(port_text)


def _db(url: str, text: str) -> int:
    if not text.isdigit():
        raise _fail(url, f"bad database number {text!r} (expected an integer)")
    return int(text)


def _bool(url: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise _fail(url, f"bad {name} {value!r} (expected true or false)")


def parse_redis_url(url: str) -> RedisTarget:
    """The :class:`RedisTarget` of ``url``; ``ValueError`` saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise _fail(
            url,
            "expected a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL",
        )
    if scheme in _SINGLE:
        return _parse_single(url, scheme)
    kind, tls = _SCHEMES[scheme]
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    # The password may hold '/', '@' or ':' typed unescaped: userinfo ends at the last '@'.
    userinfo, at, hostpart = rest.rpartition("@")
    hosts, slash, path = hostpart.partition("/")
    if not at:
        userinfo = ""
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis-py's convention: a lone userinfo is the password
            username, password = None, unquote(user)
    if not hosts.strip(","):
        raise _fail(url, "no host")
    nodes = tuple(_node(url, h.strip(), kind) for h in hosts.split(",") if h.strip())
    service: str | None = None
    db = 0
    parts = [p for p in path.split("/") if p] if slash else []
    if kind == "sentinel":
        if not parts:
            raise _fail(url, "no Sentinel service name (expected .../<service>[/db])")
        service = unquote(parts[0])
        if len(parts) > 2:
            raise _fail(url, "too many path parts (expected .../<service>[/db])")
        if len(parts) == 2:
            db = _db(url, parts[1])
    elif parts and parts != ["0"]:
        raise _fail(url, "a database number, but a cluster has only database 0")
    tls_options: list[tuple[str, Any]] = []
    sentinel: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _TLS_OPTIONS:
            tls_options.append((name, value))
        elif name == "ssl_check_hostname":
            tls_options.append((name, _bool(url, name, value)))
        elif name in _SENTINEL_OPTIONS and kind == "sentinel":
            sentinel[name] = value
        elif name == "db" and kind == "sentinel":
            db = _db(url, value)
        else:
            raise _fail(url, f"unknown query parameter {name!r}")
    if tls_options and not tls:
        raise _fail(url, "TLS options without TLS (use rediss+...://)")
    return RedisTarget(
        kind=kind,
        url=url,
        nodes=nodes,
        service=service,
        db=db,
        username=username,
        password=password,
        tls=tls,
        tls_options=tuple(tls_options),
        sentinel_username=sentinel.get("sentinel_username"),
        sentinel_password=sentinel.get("sentinel_password"),
    )


def _parse_single(url: str, scheme: str) -> RedisTarget:
    # redis-py parses these: reuse it, so that every option it knows keeps working.
    authority = url.partition("://")[2].rpartition("@")[2].partition("/")[0]
    if "," in authority:
        raise _fail(url, "several hosts: use redis+cluster:// or redis+sentinel://")
    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise _fail(url, redact_detail(str(exc), url)) from None
    if scheme != "unix":
        host = options.get("host")
        if not host:
            raise _fail(url, "no host")
    return RedisTarget(
        kind="single",
        url=url,
        db=int(options.get("db", 0) or 0),
        username=options.get("username"),
        password=options.get("password"),
        tls=scheme == "rediss",
    )
