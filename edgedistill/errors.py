"""Errors that reach users as one line.

Library code raises these (they are also ``ValueError`` / ``RuntimeError`` so plain Python
callers can catch the usual types); only ``cli.py`` turns them into exit codes. Any other
exception is a bug in edgedistill and keeps its traceback.

Messages say what was received, what was expected and how to fix it::

    raise InputError("`temperature` must be > 0. Received: temperature=0. Pass a positive number, e.g. 4.")
"""

from __future__ import annotations


class EdgeDistillError(Exception):
    """Base of every error edgedistill reports to users in one line."""

    exit_code = 1


class InputError(EdgeDistillError, ValueError):
    """The user gave something edgedistill cannot use (a file, a name, a shape, an option)."""

    exit_code = 2


class StageError(EdgeDistillError, RuntimeError):
    """A stage ran but could not produce a valid result (NaN loss, unsupported op, parity gate...)."""

    exit_code = 1


class GateFailed(StageError):
    """The run completed and its report was written, but a quality gate failed."""

    exit_code = 3


__all__ = ["EdgeDistillError", "InputError", "StageError", "GateFailed"]
