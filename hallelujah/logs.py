"""Structured logs (structlog): quiet by default, JSON lines from daemons, readable in the CLI."""
from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(fmt: str = "json", level: str | None = None) -> None:
    level_name = (level or os.environ.get("HALLELUJAH_LOG_LEVEL", "warning")).upper()
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
