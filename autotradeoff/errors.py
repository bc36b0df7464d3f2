"""Errors the CLI turns into one line and exit code 2 (bad input) or 1 (a failed run)."""

from __future__ import annotations

__all__ = ["AutotradeoffError", "UsageError", "DataMissingError", "TrialFailed"]


class AutotradeoffError(Exception):
    """Base of every error this package raises on purpose."""


class UsageError(AutotradeoffError):
    """Bad input from the user: the message names the bad value and what is allowed."""


class DataMissingError(UsageError):
    """A dataset is neither on disk nor downloadable: the message names where we looked."""


class TrialFailed(AutotradeoffError):
    """A trial could not produce valid metrics (e.g. a NaN loss); stored as FAIL with this reason."""
