"""Structured logs: one event a line on stderr, secrets redacted, never a full prompt."""

from __future__ import annotations

import logging
import sys

import structlog

from auditor.secrets import Redactor


def configure(
    level: str = "warning", json_lines: bool = False, redactor: Redactor | None = None
) -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redactor is not None:
        processors.append(redactor.structlog_processor)
    processors.append(
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
