"""Tuning: every live-tunable value, whether it comes from the file or a live override, and the file's value."""

from __future__ import annotations

from tui.client import Reading
from tui.widgets.panel import Item, Panel

__all__ = ["TuningPanel"]


class TuningPanel(Panel):
    """The provenance table of ``GET /admin/tuning`` (shown when there is room)."""

    TITLE = "Tuning"

    def lines(self, r: Reading) -> list[list[Item]]:
        if r.tuning_error:
            return [[Item("", "—", note=r.tuning_error)]]
        if not r.tuning:
            return [[Item("", "—", note="not known yet")]]
        rows = []
        for name, v in r.tuning.items():
            live = v.get("source") == "live"
            note = f"live (file {_toml(v.get('file_value'))})" if live else "file"
            rows.append([Item(name, _toml(v.get("value")), accent=live, width=23, note=note)])
        return rows


def _toml(value: object) -> str:
    """A value as the config file writes it (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
