"""Every exception the package raises on purpose. The CLI turns a ``UsageError`` into one line
(``autotradeoff: error: …``) and exit code 2; a ``StorageUnavailable`` into one line and exit code 75 (EX_TEMPFAIL: try
again later); any other ``AutotradeoffError`` into one line and exit 1."""

from __future__ import annotations

__all__ = ["AutotradeoffError", "UsageError", "DataMissingError", "TrialFailed", "TrialTimeout", "TrialStopped",
           "StorageUnavailable"]


class AutotradeoffError(Exception):
    """Base of every error this package raises on purpose. Its message is one line that ends with a full
    stop (added when the text has none), so every error reads alike."""

    def __init__(self, message: str = "") -> None:
        message = " ".join(str(message).split())
        super().__init__(message if not message or message.endswith((".", "?", "!")) else f"{message}.")


class UsageError(AutotradeoffError):
    """Bad input from the user: the message names the bad value and what is allowed."""


class DataMissingError(UsageError):
    """A dataset is neither on disk nor downloadable: the message names where we looked."""


class TrialFailed(AutotradeoffError):
    """A trial could not produce valid metrics (e.g. a NaN loss); stored as FAIL with this reason."""


class TrialTimeout(AutotradeoffError):
    """A trial ran past the search's per-trial time limit; stored as FAIL."""


class TrialStopped(AutotradeoffError):
    """Raised inside a trial at a checkpoint when the search stopped it early; stored as PRUNED. ``share``:
    how much of its work it had done (a ``trials`` budget counts that much of a trial)."""

    def __init__(self, message: str = "", share: float = 1.0) -> None:
        super().__init__(message)
        self.share = share


class StorageUnavailable(AutotradeoffError):
    """The study's storage stayed out of reach (or locked) longer than the search may wait (``--storage-wait``)."""
