"""Errors the CLI turns into one line and an exit code (exit codes: 0 ok, 1 runtime, 2 usage/config, 3 partial)."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


class UsagectlError(Exception):
    """An expected failure with a message fit for a user; never carries a secret."""

    exit_code = EXIT_FAILURE


class ConfigError(UsagectlError):
    exit_code = EXIT_USAGE


class InputError(UsagectlError):
    """Bad command-line input (unknown tenant, bad date, ...)."""

    exit_code = EXIT_USAGE


class SchemaError(UsagectlError):
    """The database schema is missing or behind the code."""

    exit_code = EXIT_FAILURE


class LockBusyError(UsagectlError):
    """Another run holds the database job lock."""

    exit_code = EXIT_FAILURE


class PartialFailure(UsagectlError):
    """Some tenants or providers failed while the others completed."""

    exit_code = EXIT_PARTIAL


class EventError(ValueError):
    """Why one input value (an event, a log line, a timestamp) is invalid; the message is the reason shown after
    FILE:LINE. A ValueError, not a UsagectlError: one bad line is reported and skipped, it does not end the run."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'acme'?)' for the closest of `choices` to a mistyped name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
