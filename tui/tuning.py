"""Checking a tunable typed into the console exactly as the server will, before sending it.

``parse_input("rcu_grace_period", "5ms", values)`` returns the JSON value to PATCH
(``"5ms"``) or raises ``ValueError`` with the server's own wording. ``values`` is the
running config from ``/config/status`` so cross-key rules see the live state; the
server checks again, and its answer wins.
"""

from __future__ import annotations

from valkyrie.config import SCHEMA, Config, ConfigError, defaults, validate_updates
from valkyrie.tuning import TUNABLE

__all__ = ["TUNABLE", "field_for", "parse_input", "describe"]


def field_for(name: str):
    """The schema ``Field`` of a tunable's short name."""
    section, _, key = TUNABLE[name].rpartition(".")
    return SCHEMA[section][key]


def describe(name: str) -> str:
    """What a tunable does and how to write it: kind, doc and an example."""
    f = field_for(name)
    example = {"duration": '"5ms", "250us", "1s"', "float": "0.6", "int": "5000", "bool": "true or false"}.get(f.kind, "")
    return f"{f.doc} ({f.kind}; e.g. {example})" if example else f.doc


def _typed(kind: str, text: str) -> object:
    text = text.strip()
    if not text:
        raise ValueError("type a value")
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == "int":
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "on", "yes", "1"):
            return True
        if lowered in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    # Durations and sizes travel as the text the operator typed, the way the config file writes them.
    return text


def parse_input(name: str, text: str, values: dict | None = None) -> object:
    """The value to send for ``name`` typed as ``text``; ``ValueError`` naming the problem."""
    if name not in TUNABLE:
        raise ValueError(f"{name!r} is not live-tunable; tunable: {', '.join(TUNABLE)}")
    raw = _typed(field_for(name).kind, text)
    # Without the running config, cross-key rules are checked against the schema defaults.
    base = Config(values or defaults())
    try:
        validate_updates(base, {TUNABLE[name]: raw})
    except ConfigError as exc:
        raise ValueError("; ".join(exc.problems)) from None
    return raw
