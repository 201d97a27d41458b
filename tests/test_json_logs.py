"""``LIVECOACH_LOG_FORMAT=json``: one JSON object a line, secrets masked, trace ids."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from pipeline import logs, redaction, tracing
from pipeline.errors import ConfigError
from pipeline.settings import load_settings

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLWhlcmU"


@pytest.fixture
def json_logging() -> Iterator[io.StringIO]:
    """The lines logger ``livecoach.test`` writes through the JSON formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("livecoach.test")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield out
    log.removeHandler(handler)


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_json_line_has_fields_and_masks_secrets(
    json_logging: io.StringIO,
) -> None:
    log = logging.getLogger("livecoach.test")
    log.warning(
        "cannot reach %s with %s", "redis://:hunter2@db:6379/0", f"Bearer {TOKEN}",
        extra={"path": f"/api/v1/live/ws?token={TOKEN}", "status": 401},
    )  # fmt: skip
    try:
        raise RuntimeError("postgresql://app:s3cret@db/live refused")
    except RuntimeError:
        log.exception("store failed")
    first, second = _lines(json_logging.getvalue())
    assert first["level"] == "WARNING" and first["logger"] == "livecoach.test"
    assert str(first["time"]).endswith("+00:00")
    assert "hunter2" not in str(first) and TOKEN not in str(first)
    assert first["message"] == "cannot reach redis://:***@db:6379/0 with Bearer ***"
    assert first["path"] == "/api/v1/live/ws?token=***" and first["status"] == 401
    assert "s3cret" not in str(second["exc_info"])
    assert "RuntimeError: postgresql://app:***@db/live refused" in str(second["exc_info"])


def test_a_line_logged_inside_a_span_names_the_trace(
    json_logging: io.StringIO,
) -> None:
    provider = TracerProvider()
    tracing.use(provider)
    try:
        tracer = tracing.tracer()
        assert tracer is not None
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("livecoach.test").info("inside")
        context = span.get_span_context()
    finally:
        tracing.use(None)
    (line,) = _lines(json_logging.getvalue())
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_the_setting_is_text_or_json() -> None:
    assert load_settings(log_format="json").log_format == "json"
    with pytest.raises(ConfigError) as caught:
        load_settings(log_format="xml")
    assert caught.value.variable == "LIVECOACH_LOG_FORMAT"


def test_the_cli_logs_json_lines_when_asked() -> None:
    # `livecoach check` against nothing reachable logs nothing itself; a child that logs
    # through the CLI's configuration shows what a process's lines look like.
    code = (
        "import logging, sys\n"
        "from pipeline import cli\n"
        "cli._cmd_check = lambda args, settings: logging.getLogger('x').warning("
        "'url %s', 'redis://:pw@h/0') or 0\n"
        "sys.exit(cli.main(['check']))\n"
    )
    env = {"LIVECOACH_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    lines = _lines(result.stderr)
    assert lines and lines[-1]["message"] == "url redis://:***@h/0", result.stderr
    assert redaction.MASK in str(lines[-1])
