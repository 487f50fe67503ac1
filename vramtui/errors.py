"""Errors that reach the user as one line on stderr, and the exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OOM = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # stdout's reader went away (`| head`): as a shell reports SIGPIPE


class UsageError(Exception):
    """Bad input from the user: flags, paths, files. Exit code 2, no traceback.

    `field` names the run-spec field the message is about ("tokens", "device",
    "model"...), so a form can show it in place; None when it concerns none.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WontFit(UsageError):
    """A run predicted not to fit the memory it would run in, refused before it starts:
    exit code 3, as a run that runs out of memory."""

    exit_code = EXIT_OOM
