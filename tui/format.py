"""Short, fixed-width renderings of the figures the panels show (``fmt_us(45.2) == "45.2µs"``)."""

from __future__ import annotations

import time

__all__ = ["DASH", "fmt_us", "fmt_seconds", "fmt_rate", "fmt_count", "fmt_bytes", "fmt_pct", "fmt_age", "fmt_clock",
           "fmt_num"]

DASH = "—"


def fmt_us(us: float | None) -> str:
    """Microseconds: ``fmt_us(45.25) == "45.2µs"``, ``fmt_us(1520) == "1.52ms"``."""
    if us is None:
        return DASH
    if us >= 1000:
        return f"{us / 1000:.3g}ms"
    return f"{us:.3g}µs"


def fmt_seconds(s: float | None) -> str:
    """A duration in seconds at a readable unit: ``fmt_seconds(0.0052) == "5.2ms"``."""
    if s is None:
        return DASH
    if s >= 1:
        return f"{s:.3g}s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g}ms"
    return f"{s * 1e6:.3g}µs"


def fmt_count(n: float | None) -> str:
    """A count with SI suffix: ``fmt_count(1_250_000) == "1.25M"``."""
    if n is None:
        return DASH
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}" if float(n).is_integer() or abs(n) >= 10 else f"{n:.2g}"


def fmt_rate(per_s: float | None, unit: str = "/s") -> str:
    """A rate: ``fmt_rate(1_250_000, " ops/s") == "1.25M ops/s"``."""
    return DASH if per_s is None else f"{fmt_count(per_s)}{unit}"


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units: ``fmt_bytes(3 * 2**20) == "3.0MiB"``."""
    if n is None:
        return DASH
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return f"{n:.0f}B"


def fmt_pct(ratio: float | None, digits: int = 1) -> str:
    """A ratio as percent: ``fmt_pct(0.1234) == "12.3%"``."""
    return DASH if ratio is None else f"{ratio * 100:.{digits}f}%"


def fmt_num(x: float | None, digits: int = 2) -> str:
    """A plain number with ``digits`` decimals (integers stay integers)."""
    if x is None:
        return DASH
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.{digits}f}"


def fmt_age(seconds: float | None) -> str:
    """An age: ``fmt_age(3725) == "1h02m"``."""
    if seconds is None:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_clock(wall: float | None) -> str:
    """Local wall-clock time of day: ``HH:MM:SS``."""
    return DASH if wall is None else time.strftime("%H:%M:%S", time.localtime(wall))
