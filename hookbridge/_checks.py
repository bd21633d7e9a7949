"""The two type checks every validator starts with, written once.

``bool`` is an ``int`` subclass, but ``"retries": true`` in a connection extra is a typo, not a
number: every check here refuses it.
"""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["is_count", "is_number"]


def is_number(value: object) -> TypeGuard[float]:
    """An int or a float, not a bool (NaN and infinities pass: callers bound the range)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: object) -> TypeGuard[int]:
    """A whole number >= 1, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
