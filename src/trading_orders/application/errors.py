"""Failures the application reports to whoever drives it, each with a message a person can act on."""


class StorageUnavailable(Exception):
    """The store could not record an order; nothing of it was kept, and a retry may succeed."""


class StoreBusy(StorageUnavailable):
    """What an order waits for (a lock, a connection) stayed held for the whole wait bound; nothing of it was kept."""

    def __init__(self, message: str, waited_seconds: float) -> None:
        """``message`` names what stayed held, for the log; ``waited_seconds`` is the bound the order waited."""
        super().__init__(message)
        self.waited_seconds = waited_seconds


class OrderInDoubt(StorageUnavailable):
    """The store cannot tell whether an order was recorded; a retry with its idempotency key finds out."""


class DamagedLogEntry(StorageUnavailable):
    """An order-log entry on disk cannot be read as it was written; it stays so until an operator repairs it.

    ``sequence`` names the entry (None only when not even its place in the log can tell).
    """

    def __init__(self, message: str, sequence: int | None) -> None:
        """``message`` names the file and place, for the operator; ``sequence`` is the entry's."""
        super().__init__(message)
        self.sequence = sequence


class IdempotencyKeyReused(Exception):
    """An idempotency key already names a different order; the message says which."""


class UnknownName(ValueError):
    """A control names a user or strategy neither the profile nor an open position knows; the message says which."""


class InvalidCursor(ValueError):
    """A cursor that no page of this service handed out."""


class ServiceNotStarted(RuntimeError):
    """The service was asked to work before its store recovered and its profile loaded."""


class StartupError(Exception):
    """The service cannot start; the message says why in one line."""


class ProfileUnavailable(StartupError):
    """The profile file is missing or does not describe a valid profile."""

    def __init__(self, message: str, problem: str = "the profile file cannot be used") -> None:
        """``message`` names the file, for the operator; ``problem`` says what is wrong without paths or OS text."""
        super().__init__(message)
        self.problem = problem


class CorruptStore(StartupError):
    """A data file cannot be read as written by this service; the message names the file and place."""


class StoreInUse(StartupError):
    """Another process already holds the data files open."""
