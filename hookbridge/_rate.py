"""A rate: ``limit`` tokens per ``period`` seconds, read from text such as ``"100/s"``.

Kept apart from the limiter that spends it: configuration (connection extras, specs, trigger
state) reads and writes rates without needing the limiter's machinery.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._checks import is_number
from ._errors import ConfigurationError

__all__ = ["RATE_FORMS", "Rate"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RATE = re.compile(
    rf"^\s*(?P<limit>{_NUMBER})\s*/\s*(?P<count>{_NUMBER})?\s*(?P<unit>[a-zA-Z]+)\s*$"
)
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
}
RATE_FORMS = (
    "write it as '<count>/<unit>' or '<count>/<number><unit>', with unit s|sec|second, "
    "min|minute or h|hour, e.g. '100/s', '6000/min', '3600/h', '10/5s', '10/2.5min', '2.5/s'"
)


def _number_text(value: float) -> str:
    # Exact and short: "100", "2.5", "1e-05"; Rate.parse reads every form back to the same float.
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class Rate:
    """``limit`` tokens per ``period`` seconds; ``Rate.parse("100/s")`` reads the text form."""

    limit: float
    period: float

    def __post_init__(self) -> None:
        for field in ("limit", "period"):
            value = getattr(self, field)
            if not is_number(value) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(
                    f"Rate {field} must be a positive finite number, got {value!r}; {RATE_FORMS}.",
                    field="rate",
                )
            object.__setattr__(self, field, float(value))

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Read ``"100/s"``, ``"6000/min"``, ``"3600/h"``, ``"10/5s"``, ``"2.5/s"`` and the like."""
        if not isinstance(text, str):
            raise ConfigurationError(
                f"rate must be text, got {text!r} ({type(text).__name__}); {RATE_FORMS}.",
                field="rate",
            )
        match = _RATE.match(text)
        unit = _UNITS.get(match["unit"].lower()) if match else None
        if match is None or unit is None:
            raise ConfigurationError(f"cannot read rate {text!r}; {RATE_FORMS}.", field="rate")
        limit = float(match["limit"])
        count = float(match["count"]) if match["count"] else 1.0
        period = count * unit
        if not (0 < limit < math.inf and 0 < period < math.inf):
            raise ConfigurationError(
                f"rate {text!r} must have a positive count and a positive period; {RATE_FORMS}.",
                field="rate",
            )
        return cls(limit, period)

    @property
    def interval(self) -> float:
        """Seconds between two tokens at this rate (the GCRA emission interval)."""
        return self.period / self.limit

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.period)
        per = unit if unit is not None else f"{_number_text(self.period)}s"
        return f"{_number_text(self.limit)}/{per}"
