"""Example provider package: a key/value store hook and the hookbridge adapter over it."""

from __future__ import annotations

__all__ = ["KeyValueAdapter", "KeyValueClient", "KeyValueHook"]

from .adapter import KeyValueAdapter
from .hook import KeyValueClient, KeyValueHook
