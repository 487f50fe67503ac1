"""Errors that reach the user as one line on stderr."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: flags, paths, files. Exit code 2, no traceback."""


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OOM = 3
EXIT_INTERRUPTED = 130
