"""User-facing errors: every message names the file or field at fault and how to fix it."""

from __future__ import annotations


class PpeError(Exception):
    """An error caused by input the user controls (files, config, flags).

    The CLI prints the message on one line (no traceback) and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(PpeError):
    """The configuration has an unknown key or a bad value."""


class DataError(PpeError):
    """A dataset file is missing, malformed or inconsistent."""
