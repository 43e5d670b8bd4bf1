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

from pythonjsonlogger.json import JsonFormatter

LOG_FILE = "trading_orders.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_configured: Path | None = None
_configuring = threading.Lock()
_writer: _LogWriter | None = None


# Escapes with a name of their own; every other non-printable character is
# written by its code point.
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_for_log(text: str) -> str:
    r"""``text`` with every non-printable character and the backslash written as a visible escape.

    CR, LF and TAB read ``\r``, ``\n``, ``\t``; other control characters, DEL,
    C1 controls, U+0085, U+2028, U+2029, format and unassigned characters read
    ``\xNN``, ``\uNNNN`` or ``\UNNNNNNNN`` (whatever ``str.isprintable()``
    refuses; the space stays). The backslash reads ``\\``, so the result reads
    back one way only: ``\n`` in it was a line feed, ``\\n`` a backslash and an n.
    """
    if text.isprintable() and "\\" not in text:
        return text  # the usual line: no copy
    return "".join(_escape(character) for character in text)


def _escape(character: str) -> str:
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class OneLineFormatter(logging.Formatter):
    r"""One record, one line: a UTC ISO-8601 timestamp, the level, the logger, then the escaped rest.

    Why the whole rendered record is escaped here rather than each value a
    client sent at each call site: a request's path, a header, an order's
    STRATEGY or an exception's text reach the log through many calls (ours,
    the brief's logInfo, libraries'), and one call that forgot would let a
    client write a line of its own (CWE-117). Escaped here, no record can hold
    a line break, so every line of the file starts with the service's own
    timestamp and level. The price: a traceback is one line too, its lines
    joined by a visible ``\n`` (``sed 's/\\n/\n/g'`` unfolds it), and the
    service's own backslashes read doubled.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line, its message, traceback and stack escaped."""
        return escape_for_log(super().format(record))

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


def _json_lines() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=True,
    )


def configure_logging(directory: Path, level: str = "INFO", log_format: str = "text") -> Path:
    """Send every log record to ``directory``/trading_orders.log (rotated) and stderr; returns the file.

    ``log_format`` "text" writes OneLineFormatter's lines, "json" one JSON
    object per line (``timestamp``, ``level``, ``logger``, ``message``,
    ``exc_info``) for log shippers; JSON escapes every control character
    and, ASCII only, every line separator, so a record is one line there too.

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
        formatter = OneLineFormatter(_FORMAT) if log_format == "text" else _json_lines()
        to_file = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
        to_console = logging.StreamHandler(sys.stderr)
        for handler in (to_file, to_console):
            handler.setFormatter(formatter)
        # uvicorn's own access line would repeat the service's, which also
        # names the order: with no handler of its own, uvicorn skips it.
        uvicorn_access = logging.getLogger("uvicorn.access")
        uvicorn_access.handlers.clear()
        uvicorn_access.propagate = False
        # uvicorn's other lines (start-up, shutdown, an application's
        # traceback, whose text a client may have chosen) go through these
        # handlers too: escaped, and in the file. Its levels stay as set.
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        _writer = _LogWriter(root, [to_file, to_console])
        atexit.register(write_logs_directly)
        _configured = path
        return path


def write_logs_directly() -> None:
    """Flush the queued records and write later ones at once: for a process about to end."""
    if _writer is not None:
        _writer.write_directly()
