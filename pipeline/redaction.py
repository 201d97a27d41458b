"""Keeping secrets out of logs and error messages.

Two kinds of secret travel in strings livecoach might print: passwords inside server
URLs (``redis://:pw@host``, ``postgresql://user:pw@host/db``, or ``?password=`` in
the query) and bearer tokens in HTTP requests (``?token=`` in a URL, an
``Authorization`` header). :func:`redact_url` and :func:`redact_tokens` replace them
with ``***``; :class:`RedactingFilter` applies both to every record a logger handler
emits, whatever the format (aiohttp's access log included).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

#: Query parameters whose values are secrets, in server URLs and request URLs alike.
_SECRET_PARAMS = ("password", "token", "access_token", "id_token", "secret", "key")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:%s)=)[^&#\s\"']*" % "|".join(_SECRET_PARAMS)  # noqa: UP031
)
#: ``Authorization: Bearer xyz`` / ``Basic xyz``, as a header line or a repr of one.
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(\w+\s+)?[^\s'\",}]+")
#: ``scheme://user:password@`` anywhere in a text.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
#: A bare JWT (three base64url parts, the first a JSON header ``{"``).
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+")


def redact_url(url: str) -> str:
    """``url`` with its password (userinfo or a secret query parameter) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_tokens(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:{MASK}@{host}"
    query = _QUERY_SECRET.sub(rf"\g<1>{MASK}", "?" + parts.query)[1:] if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_tokens(text: str) -> str:
    """``text`` with every token, password in a URL and Authorization value masked."""
    text = _URL_USERINFO.sub(rf"\g<1>{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\g<1>\g<2>{MASK}", text)
    return _JWT.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the formatted message of every record.

    Installed on handlers (not loggers) so it sees records of every logger that
    propagates to them, aiohttp's ``aiohttp.access`` included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        clean = redact_tokens(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install(handlers: list[logging.Handler] | None = None) -> None:
    """Add a :class:`RedactingFilter` to ``handlers`` (default: the root logger's)."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
