"""The project's exception hierarchy.

Every error a user can cause is an :class:`OverfeatError`; its message says what was wrong,
what was expected and, where it helps, what to do. The CLI prints the message on one line and
exits with :attr:`OverfeatError.exit_code` instead of showing a traceback.
"""

from __future__ import annotations

import numbers


class OverfeatError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code = 1


class InputError(OverfeatError, ValueError):
    """A user-supplied argument, path, image or array is not acceptable."""

    exit_code = 2


class ModelError(OverfeatError):
    """A model file, checkpoint or its metadata is missing, malformed or inconsistent."""

    exit_code = 2


class BackendError(OverfeatError):
    """An inference backend is unavailable or failed."""


class BuildError(OverfeatError):
    """Exporting, converting or building an artifact failed."""


class ParityError(BuildError):
    """An exported artifact does not reproduce its source within tolerance."""


def positive_int(name: str, value: object) -> int:
    """``value`` as an int, or an InputError naming ``name`` unless it is an integer ≥ 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
