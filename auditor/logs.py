"""Structured logs: one event a line on stderr, secrets redacted, never a full prompt."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

from auditor.secrets import Redactor

# What the last `configure` call set: a later call that names only some settings keeps the
# others (above all the redactor: configuring JSON output must never drop secret scrubbing).
_current: dict[str, Any] = {"level": None, "json_lines": None, "redactor": None}


def configured() -> tuple[str | None, bool | None]:
    """The level and JSON-lines setting the last `configure` call set (None: from the
    environment), for a child process to log as this one does."""
    return _current["level"], _current["json_lines"]


def configure(
    level: str | None = None, json_lines: bool | None = None, redactor: Redactor | None = None
) -> None:
    """Set up structlog. Unset arguments keep the previous call's value, else come from the
    environment: `AUDITOR_LOG_LEVEL` (default warning) and `AUDITOR_LOG_FORMAT=json` (one JSON
    object a line: timestamp, level, event and the bound fields). With JSON lines, warnings
    and errors of the standard `logging` module (uvicorn, APScheduler, alembic) are rendered
    the same way; their info and debug chatter (httpcore's every socket event) stays out."""
    for key, value in (("level", level), ("json_lines", json_lines), ("redactor", redactor)):
        if value is not None:
            _current[key] = value
    level = _current["level"] or os.environ.get("AUDITOR_LOG_LEVEL") or "warning"
    json_lines = _current["json_lines"]
    if json_lines is None:
        json_lines = os.environ.get("AUDITOR_LOG_FORMAT", "").strip().lower() == "json"
    redactor = _current["redactor"]

    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_lines:
        processors.append(structlog.processors.format_exc_info)  # a traceback as one field
    if redactor is not None:
        processors.append(redactor.structlog_processor)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(processors, renderer, numeric_level if json_lines else None)


class _AuditorHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler this module installed, so reconfiguring replaces it."""


def _route_stdlib_logging(
    processors: list[structlog.typing.Processor],
    renderer: structlog.typing.Processor,
    level: int | None,
) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AuditorHandler)]:
        root.removeHandler(handler)
    if level is None:  # console format: the standard library keeps its own defaults
        return
    handler = _AuditorHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
