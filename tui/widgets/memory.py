"""Memory: resident set of the server process and the bytes held by the live route tables."""

from __future__ import annotations

from tui.client import Reading
from tui.format import fmt_bytes, fmt_pct
from tui.widgets.panel import Item, Panel

__all__ = ["MemoryPanel"]


class MemoryPanel(Panel):
    """RSS and table bytes; the share tells table growth from other growth."""

    TITLE = "Memory"

    def lines(self, r: Reading) -> list[list[Item]]:
        share = r.table_bytes / r.rss_bytes if r.rss_bytes and r.table_bytes is not None else None
        return [
            [Item("RSS", fmt_bytes(r.rss_bytes), width=6)],
            [Item("tables", fmt_bytes(r.table_bytes), width=6, note=f"{fmt_pct(share)} of RSS" if share is not None else "")],
        ]
