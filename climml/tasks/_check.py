"""Config checks shared by the task modules."""

from __future__ import annotations

from collections.abc import Iterable

from climml.errors import ConfigError, expected


def check_names(field: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """ConfigError naming ``field`` for the first name of ``given`` not in ``allowed``."""
    allowed = list(allowed)
    for name in given:
        if name not in allowed:
            raise ConfigError(expected(field, f"names from {allowed}", repr(name)))
