"""Passwords in server URLs never reach an error message, however the URL is mistyped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.redaction import redact_detail, redact_tokens, redact_url

SECRET = "s3cretpw"

#: URLs whose password parsers get wrong: unescaped ``/``, ``#`` or ``@`` in it.
MISTYPED = [
    f"redis://:{SECRET}@127.0.0.1:1/0",
    "redis://:s3cret/pw@127.0.0.1:1/0",
    "redis://:s3cret#pw@127.0.0.1:1/0",
    "redis://:s3cret@pw@127.0.0.1:1/0",
    f"unix://:{SECRET}@/nonexistent.sock",
    f"redis://u:{SECRET}@[::1/0",
    f"rediss://:{SECRET}@127.0.0.1:1/0?ssl_cert_reqs=bogus",
]
MISTYPED_PG = [
    f"postgresql://u:{SECRET}@127.0.0.1:1/db",
    "postgresql://u:s3cret/pw@host/db",
    "postgresql://u:s3cret#pw@127.0.0.1:1/db",
    "postgresql://u:s3cret@pw@127.0.0.1:1/db",
    f"postgresql://u:{SECRET}@[::1/db",
    f"postgresql://u:{SECRET}@host:notaport/db",
    f"postgresql://u:{SECRET}@127.0.0.1:1/",
    f"postgresql://127.0.0.1:1/db?password={SECRET}&sslmode=bogus",
    f"mysql://u:{SECRET}@x/y",
]


def _pieces(url: str) -> list[str]:
    return ["s3cret", "s3cretpw"] if SECRET in url else ["s3cret"]


@pytest.mark.parametrize("url", MISTYPED + MISTYPED_PG)
def test_redact_url_masks_a_mistyped_password(url: str) -> None:
    shown = redact_url(url)
    assert "s3cret" not in shown, shown
    assert "***" in shown


def test_redact_url_keeps_the_rest() -> None:
    assert redact_url("postgresql://u:s3cret/pw@db.example:5432/live") == (
        "postgresql://u:***@db.example:5432/live"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redact_detail_masks_pieces_a_parser_quotes() -> None:
    url = "postgresql://u:s3cret@pw@127.0.0.1:1/db"
    detail = "failed to resolve host 'pw@127.0.0.1'; port as 's3cret'"
    assert redact_detail(detail, url) == "failed to resolve host '***@127.0.0.1'; port as '***'"


def _check(variable: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "check"],
        env={**env, variable: url},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "url"),
    [("LIVECOACH_REDIS_URL", u) for u in MISTYPED]
    + [("LIVECOACH_DATABASE_URL", u) for u in MISTYPED_PG],
)
def test_check_names_the_variable_and_never_the_password(variable: str, url: str) -> None:
    result = _check(variable, url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"livecoach: error: {variable}: "), result.stderr
    assert "s3cret" not in result.stdout + result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", MISTYPED + MISTYPED_PG)
def test_log_lines_mask_a_mistyped_password(url: str) -> None:
    line = redact_tokens(f"cannot reach {url!r}: Connection refused")
    assert "s3cret" not in line, line
    assert line.endswith(": Connection refused")
