"""Errors raised by the task registry.

Each one subclasses the built-in exception a caller would naturally catch
(``ValueError`` / ``FileNotFoundError``), so CLI code can report them as user
errors without importing this module.
"""

from __future__ import annotations


class UnknownTaskError(ValueError):
    """A task name that is not in the registry."""


class UnknownSplitError(ValueError):
    """A split name the task does not have."""


class DataNotFoundError(FileNotFoundError):
    """A data file that is not where the task looked for it."""


class MalformedDataError(ValueError):
    """A data record that cannot be read or lacks a required field."""
