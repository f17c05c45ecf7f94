"""Traffic: routing decisions per second (the guide's throughput) and errors, with a throughput strip."""

from __future__ import annotations

from collections import deque

from tui.client import THROUGHPUT_FLOOR, Reading
from tui.format import DASH, fmt_count, fmt_pct, fmt_rate
from tui.widgets.graph import spark
from tui.widgets.panel import Item, Panel

__all__ = ["TrafficPanel"]

HISTORY = 240


class TrafficPanel(Panel):
    """Throughput flagged under 1M ops/s while there is load; errors per second and share of lookups."""

    TITLE = "Traffic"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.history: deque[float | None] = deque(maxlen=HISTORY)

    def record(self, reading: Reading) -> None:
        """Add one poll's throughput to the strip."""
        self.history.append(reading.throughput)

    def lines(self, r: Reading) -> list[list[Item]]:
        floor = f"floor {fmt_count(THROUGHPUT_FLOOR)}"
        width = max(10, (self.content_size.width or 38))
        peak = max((v for v in self.history if v), default=None)
        peak_note = f"peak {fmt_rate(peak)}" if peak else ""
        return [
            [Item("throughput", fmt_rate(r.throughput, " ops/s"), flagged="throughput" in r.flags, width=10,
                  note="idle" if r.throughput == 0 else f"({floor})")],
            [Item("errors", fmt_rate(r.errors_per_s), width=10,
                  note=f"{fmt_pct(r.error_ratio, 2)} of lookups" if r.error_ratio is not None else "")],
            [Item("top error", r.top_error or DASH, width=10)],
            [Item("", spark(self.history, width - len(peak_note) - 1), note=peak_note)],
        ]

    def flagged(self, r: Reading) -> bool:
        return "throughput" in r.flags
