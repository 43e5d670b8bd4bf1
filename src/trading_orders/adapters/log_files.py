"""Logging for the whole process: rotating files in the log folder and the console, set up once."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
import time
from pathlib import Path

LOG_FILE = "trading_orders.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_configured: Path | None = None
_configuring = threading.Lock()
_writer: _LogWriter | None = None


class _UtcFormatter(logging.Formatter):
    """Timestamps in UTC, ISO-8601, so logs from every host line up."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The record's time as ISO-8601 UTC with milliseconds."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class _Unformatted(logging.handlers.QueueHandler):
    """Queues records as they are, so formatting them happens on the writer thread too."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record itself: its arguments are the caller's strings and numbers, which do not change."""
        return record


class _LogWriter:
    """Formats and writes queued records on a thread of its own, off the event loop's path."""

    def __init__(self, root: logging.Logger, handlers: list[logging.Handler]) -> None:
        self._root = root
        self._handlers = handlers
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._queueing = _Unformatted(records)
        self._listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
        root.addHandler(self._queueing)
        self._listener.start()

    def write_directly(self) -> None:
        """Write what is queued, stop the thread, and from now on write each record at once."""
        with _configuring:
            if self._queueing not in self._root.handlers:
                return
            self._root.removeHandler(self._queueing)
            self._listener.stop()
            for handler in self._handlers:
                self._root.addHandler(handler)


def configure_logging(directory: Path, level: str = "INFO") -> Path:
    """Send every log record to ``directory``/trading_orders.log (rotated) and stderr; returns the file.

    The first call decides where logs go; later calls only change the level.
    Records are written by a thread of their own (see write_logs_directly).
    """
    global _configured, _writer
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
        # uvicorn's own access line would repeat the service's, which also
        # names the order: with no handler of its own, uvicorn skips it.
        uvicorn_access = logging.getLogger("uvicorn.access")
        uvicorn_access.handlers.clear()
        uvicorn_access.propagate = False
        _writer = _LogWriter(root, [to_file, to_console])
        atexit.register(write_logs_directly)
        _configured = path
        return path


def write_logs_directly() -> None:
    """Flush the queued records and write later ones at once: for a process about to end."""
    if _writer is not None:
        _writer.write_directly()
