"""The library's own errors.

Every message says what is wrong and how to fix it. Only the CLI turns these into exit codes;
library code never prints or exits.
"""

from __future__ import annotations

INTERRUPTED_EXIT = 130  # Ctrl-C, as a shell reports SIGINT: what every edl command exits with when interrupted


class EdlError(Exception):
    """Base of all errors the evaluator raises on purpose."""

    exit_code = 1


class DataError(EdlError):
    """The test set could not be found, downloaded, read or verified."""


class SubmissionError(EdlError):
    """The submission breaks the contract or cannot be loaded; ``problems`` lists each one."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ProviderError(EdlError):
    """The requested execution provider is not what would run."""


class MeterError(EdlError):
    """The energy measurement failed or cannot be trusted."""


class StoppedError(EdlError):
    """The scoring was stopped on request (the service's organiser cancelled it while it ran): the run in progress
    is discarded like an interrupted one, runs already whole stay staged for a resume, nothing is published."""


class ResultError(EdlError):
    """A result document cannot be written, read or trusted."""


class UsageError(EdlError):
    """The command was called in a way it cannot carry out as asked: a usage error (exit 2), before anything is
    written; the message names the argument and the choices."""

    exit_code = 2


class ConfigError(UsageError):
    """An option has a value it cannot take; the message names the option and what it accepts."""


def onnxruntime_message(exc: BaseException) -> str:
    """onnxruntime's exception text without its C++ location prefix: the first line of what it means."""
    text = str(exc).split(" : ", 2)[-1].strip()
    return text.splitlines()[0] if text else type(exc).__name__
