"""Errors the CLI turns into one line and an exit code (design.md: 0 ok, 1 runtime, 2 usage/config, 3 partial)."""

from __future__ import annotations

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
