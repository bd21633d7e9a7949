"""Exception groups and the owned task group of the modules that run tasks (prefetch, amap)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import import_module

import anyio
from anyio.abc import TaskGroup

__all__ = ["EXCEPTION_GROUP", "owned_task_group", "single_leaf"]

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


@asynccontextmanager
async def owned_task_group() -> AsyncIterator[TaskGroup]:
    """A task group whose tasks are cancelled when the block ends; one error comes out unwrapped."""
    unwrapped: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            try:
                yield tg
            finally:
                tg.cancel_scope.cancel()
    except EXCEPTION_GROUP as group:
        unwrapped = single_leaf(group)
        if unwrapped is None:
            raise
    if unwrapped is not None:
        # Raised outside the except block so that the traceback does not show the group.
        raise unwrapped
