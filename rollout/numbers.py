"""One way to write a measured number for people, everywhere the bot talks: check tables, gate
messages, reports, daily status, notifications and alert texts.

Rates and ratios as percent (`0.1 %`), latencies in milliseconds (`773 ms`, `1.25 s` from one
second on), per-minute rates as `12.5/min`, counts with their noun (`77 canary requests`); three
significant digits, never scientific notation. The unit names are the signals' (`ratio`,
`seconds`, `per_minute`, `per_second`, rollout.analysis.signals.Signal.unit).
"""

from __future__ import annotations

import math
from decimal import Decimal

NO_DATA = "no data"


def significant(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits in plain notation: 0.000123, 12.3, 1230."""
    if value == 0:
        return "0"
    text = f"{Decimal(f'{value:.{digits}g}'):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _special(value: float | None) -> str | None:
    if value is None:
        return NO_DATA
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return None


def percent(ratio: float | None) -> str:
    """A ratio as percent: 0.001 -> `0.1 %`."""
    return _special(ratio) or f"{significant(ratio * 100)} %"  # type: ignore[operator]


def duration(seconds: float | None) -> str:
    """A latency: 0.773 -> `773 ms`, 1.25 -> `1.25 s`."""
    if (special := _special(seconds)) is not None:
        return special
    if abs(seconds) < 1:  # type: ignore[arg-type]
        return f"{significant(seconds * 1000)} ms"  # type: ignore[operator]
    return f"{significant(seconds)} s"  # type: ignore[arg-type]


def count(value: float | None, noun: str) -> str:
    """A count with its noun: (77, "canary request") -> `77 canary requests`."""
    if (special := _special(value)) is not None:
        return f"{special} ({noun}s)"
    shown = f"{value:,.0f}" if abs(value) >= 10 else significant(value)  # type: ignore[arg-type]
    return f"{shown} {noun if shown == '1' else noun + 's'}"


def number(value: float | None, unit: str = "") -> str:
    """A value in its signal's unit; a unitless one (a ratio of ratios, an e-value) plainly."""
    if (special := _special(value)) is not None:
        return special
    if unit == "ratio":
        return percent(value)
    if unit == "seconds":
        return duration(value)
    if unit == "per_minute":
        return f"{significant(value)}/min"  # type: ignore[arg-type]
    if unit == "per_second":
        return f"{significant(value)}/s"  # type: ignore[arg-type]
    return significant(value)  # type: ignore[arg-type]
