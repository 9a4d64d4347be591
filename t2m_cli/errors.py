"""Errors t2m raises on purpose.

Every message says what went wrong and what to do next. The CLI maps them to exit codes:
a user's mistake (bad usage, config or input) exits 2, a failure at run time exits 1.
Anything else that escapes is our bug and keeps its traceback.
"""

from __future__ import annotations


class T2MError(Exception):
    """Base class of t2m's expected failures; exits 1 from the CLI."""

    exit_code = 1


class UserInputError(T2MError):
    """The user's input (arguments, files, data) cannot be used; exits 2."""

    exit_code = 2


class ConfigError(UserInputError):
    """A run config is invalid; the message names the dotted key."""


class DataError(UserInputError):
    """A dataset, mesh or descriptions file is missing or malformed."""


class TrainingDiverged(UserInputError):
    """Training reached a NaN or infinite loss, update or weight; exits 2.

    The settings (learning rates) or the features caused it, not the machine: training is
    seeded, so a rerun with the same input diverges again, and the message says what to change.
    """


class RunFailure(T2MError):
    """Something failed while running (a file could not be written, the disk is full)."""
