"""The exceptions climml raises for bad input.

Every error names the offending field, what was expected and what was found, so that the CLI can
print it as one line (``climml: <message>``) and exit with status 2.
"""

from __future__ import annotations


class ClimmlError(Exception):
    """Base class of every error climml raises on purpose for bad input."""


class ConfigError(ClimmlError, ValueError):
    """A configuration key, type or value is invalid (message names its dotted path)."""


class DataError(ClimmlError, ValueError):
    """A dataset lacks a variable or dimension, or has malformed coordinates."""


class CheckpointError(ClimmlError, RuntimeError):
    """A checkpoint is missing, unreadable, or incompatible with the current model."""


def expected(field: str, want: object, found: object) -> str:
    """Format the standard message: ``<field>: expected <want>, found <found>``."""
    return f"{field}: expected {want}, found {found}"
