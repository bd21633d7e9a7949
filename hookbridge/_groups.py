"""Exception-group helpers shared by the modules that own task groups (prefetch, amap)."""

from __future__ import annotations

import builtins
from importlib import import_module

__all__ = ["EXCEPTION_GROUP", "single_leaf"]

# BaseExceptionGroup is a builtin from Python 3.11 on; before that anyio installs the backport.
# Looked up at run time because mypy checks as 3.10, where the backport's stubs may be absent.
EXCEPTION_GROUP: type[BaseException] = (
    getattr(builtins, "BaseExceptionGroup", None)
    or import_module("exceptiongroup").BaseExceptionGroup
)


def single_leaf(group: BaseException) -> BaseException | None:
    """The only leaf of a (nested) exception group, or None when there are several.

    A task group wraps even a single failure in a group; callers that own the task group re-raise
    that one error so users see the hookbridge error they can catch, never a group of one.
    """
    while isinstance(group, EXCEPTION_GROUP):
        inner: tuple[BaseException, ...] = getattr(group, "exceptions", ())
        if len(inner) != 1:
            return None
        group = inner[0]
    return group
