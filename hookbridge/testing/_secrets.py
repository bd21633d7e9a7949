"""The forms a secret takes on the wire, for tests that prove no secret leaks."""

from __future__ import annotations

from .._errors import encoded_forms

__all__ = ["secret_forms"]


def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` raw, percent-encoded, form-encoded and in base64: what a leak test looks for."""
    return encoded_forms(secret)
