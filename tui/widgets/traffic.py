"""Traffic: routing decisions per second (the guide's throughput) and errors, with a throughput sparkline."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.widgets import Sparkline

from tui.client import THROUGHPUT_FLOOR, Reading
from tui.format import DASH, fmt_count, fmt_pct, fmt_rate
from tui.widgets.panel import Item, Panel

__all__ = ["TrafficPanel"]

HISTORY = 240


class TrafficPanel(Panel):
    """Throughput flagged under 1M ops/s while there is load; errors per second and share of lookups."""

    DEFAULT_CSS = """
    TrafficPanel Sparkline {
        height: 1;
        margin-top: 0;
    }
    TrafficPanel.-stale Sparkline > .sparkline--max-color {
        color: $text-disabled;
    }
    TrafficPanel.-stale Sparkline > .sparkline--min-color {
        color: $text-disabled;
    }
    """

    TITLE = "Traffic"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.history: deque[float] = deque(maxlen=HISTORY)

    def compose_extra(self) -> ComposeResult:
        yield Sparkline([])

    def record(self, reading: Reading) -> None:
        """Add one poll's throughput to the sparkline."""
        self.history.append(reading.throughput or 0.0)

    def lines(self, r: Reading) -> list[list[Item]]:
        floor = f"floor {fmt_count(THROUGHPUT_FLOOR)}"
        errors = fmt_rate(r.errors_per_s)
        return [
            [Item("throughput", fmt_rate(r.throughput, " ops/s"), flagged="throughput" in r.flags, width=10,
                  note="" if r.throughput else floor)],
            [Item("errors", errors, width=10, note=f"{fmt_pct(r.error_ratio, 2)} of lookups" if r.error_ratio is not None else "")],
            [Item("top error", r.top_error or DASH, width=10)],
        ]

    def flagged(self, r: Reading) -> bool:
        return "throughput" in r.flags

    def show_extra(self, reading: Reading | None, stale: bool) -> None:
        self.query_one(Sparkline).data = list(self.history) or [0.0]
