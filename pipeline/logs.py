"""Log output of livecoach's processes: plain text lines, or one JSON object a line.

``LIVECOACH_LOG_FORMAT=json`` gives a log collector (Loki, Elasticsearch, CloudWatch)
fields instead of text to parse: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
``message``, ``exc_info`` when a traceback is attached, any ``extra`` fields of the
record, and ``trace_id``/``span_id`` while a span is current (see
:mod:`pipeline.tracing`). Secrets are masked as on text lines
(:mod:`pipeline.redaction`): the message and ``extra`` strings by the record factory
the CLI installs, the traceback text here.

Written by hand (40 lines on orjson, already a dependency) rather than with
python-json-logger: one more runtime dependency for a formatter this small.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline import redaction, tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; any other attribute came in ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redaction.redact_tokens(record.getMessage()),
        }
        if record.exc_info:
            out["exc_info"] = redaction.redact_tokens(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc_info"] = redaction.redact_tokens(record.exc_text)
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and name not in out:
                out[name] = redaction.redact_tokens(value) if isinstance(value, str) else value
        out.update(tracing.log_fields())
        return orjson.dumps(out, default=str).decode()


def handler_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for stderr in ``log_format`` (Faust's worker
    takes one: it replaces the root logger's handlers when it starts)."""
    formatter: dict[str, Any] = (
        {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}
        if log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"livecoach": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "livecoach",
                "stream": "ext://sys.stderr",
                "level": level,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(log_format: str, level: str) -> None:
    """Log to stderr in ``log_format`` (``text`` or ``json``) from ``level`` up."""
    logging.config.dictConfig(handler_config(log_format, level))
