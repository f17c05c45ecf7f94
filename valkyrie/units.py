"""Durations (``"5ms"``, ``"82µs"``) and sizes (``"4GB"``) as config files write them."""

import re

__all__ = ["parse_duration", "parse_size", "format_duration"]

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ns|us|µs|μs|ms|s|m|h)\s*$")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(text):
    """Seconds in a duration string: ``parse_duration("82µs") == 8.2e-05``.

    Raises ``ValueError`` naming the text for a missing unit or a negative value.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; write it with a unit, e.g. \"5ms\" or \"300s\"")
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration; write a number and one of ns, us, µs, ms, s, m, h")
    value = float(m.group(1))
    if value < 0:
        raise ValueError(f"duration {text!r} is negative")
    return value * _DURATION_UNITS[m.group(2)]


def parse_size(value):
    """Bytes in a size: an int, or a string like ``"4GB"`` / ``"512MiB"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; write e.g. \"4GB\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} is negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size; write e.g. \"4GB\"")
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size; write a number and one of B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB)")
    if m.group(1).startswith("-"):
        raise ValueError(f"size {value!r} is negative")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "B").lower()])


def format_duration(seconds):
    """Shortest readable form of a duration in seconds: ``format_duration(8.2e-05) == "82us"``."""
    if seconds == 0:
        return "0s"  # not "0us", as if zero were a microsecond quantity
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            value = seconds / scale
            return f"{value:.6g}{unit}"
    return f"{seconds}s"
