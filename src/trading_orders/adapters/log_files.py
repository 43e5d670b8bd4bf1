"""Logging for the whole process: rotating files in the log folder and the console, set up once."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path

LOG_FILE = "trading_orders.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_configured: Path | None = None
_configuring = threading.Lock()


class _UtcFormatter(logging.Formatter):
    """Timestamps in UTC, ISO-8601, so logs from every host line up."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The record's time as ISO-8601 UTC with milliseconds."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def configure_logging(directory: Path, level: str = "INFO") -> Path:
    """Send every log record to ``directory``/trading_orders.log (rotated) and stderr; returns the file.

    The first call decides where logs go; later calls only change the level.
    """
    global _configured
    with _configuring:
        root = logging.getLogger()
        root.setLevel(level)
        if _configured is not None:
            return _configured
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOG_FILE
        formatter = _UtcFormatter(_FORMAT)
        to_file = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
        to_console = logging.StreamHandler(sys.stderr)
        for handler in (to_file, to_console):
            handler.setFormatter(formatter)
            root.addHandler(handler)
        _configured = path
        return path
