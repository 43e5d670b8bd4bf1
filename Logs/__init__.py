"""The brief's logging functions (logInfo, logError, ...), writing rotating files into this folder.

The brief's scripts do ``from Logs import logInfo``; these names keep that
working. Everything goes through the standard logging module, configured once
by trading_orders.adapters.log_files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trading_orders.adapters.log_files import configure_logging

LOG_DIRECTORY = Path(__file__).resolve().parent

_logger = logging.getLogger("trading_orders.scripts")


def _ensure_configured() -> None:
    if not logging.getLogger().handlers:
        # The same variable the service reads, so a script and the service log side by side.
        configure_logging(Path(os.environ.get("TRADING_ORDERS_LOG_DIR") or LOG_DIRECTORY))


def logDebug(message: object) -> None:  # noqa: N802 - the brief's name
    """Log ``message`` at DEBUG level."""
    _ensure_configured()
    _logger.debug("%s", message)


def logInfo(message: object) -> None:  # noqa: N802 - the brief's name
    """Log ``message`` at INFO level."""
    _ensure_configured()
    _logger.info("%s", message)


def logWarning(message: object) -> None:  # noqa: N802 - the brief's name
    """Log ``message`` at WARNING level."""
    _ensure_configured()
    _logger.warning("%s", message)


def logError(message: object) -> None:  # noqa: N802 - the brief's name
    """Log ``message`` at ERROR level."""
    _ensure_configured()
    _logger.error("%s", message)


def logCritical(message: object) -> None:  # noqa: N802 - the brief's name
    """Log ``message`` at CRITICAL level."""
    _ensure_configured()
    _logger.critical("%s", message)


__all__ = ["LOG_DIRECTORY", "logCritical", "logDebug", "logError", "logInfo", "logWarning"]
