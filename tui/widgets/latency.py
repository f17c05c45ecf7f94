"""Request latency: live P50/P90/P99/P99.9 over the server's last minute, and a P99 history chart."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult

from tui.client import BUDGET_US, Reading
from tui.format import fmt_us
from tui.widgets.graph import LatencyGraph
from tui.widgets.panel import Item, Panel

__all__ = ["LatencyPanel"]

HISTORY = 240


class LatencyPanel(Panel):
    """Quantiles flagged against the 82µs budget, with one chart column per poll."""

    DEFAULT_CSS = """
    LatencyPanel LatencyGraph {
        height: 1fr;
    }
    """

    TITLE = "Latency (last minute)"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.history: deque[float | None] = deque(maxlen=HISTORY)
        self._last_total: float | None = None

    def compose_extra(self) -> ComposeResult:
        yield LatencyGraph()

    def record(self, reading: Reading) -> None:
        """Add one poll's P99 to the history (called once per successful poll); a gap when nothing was routed."""
        total, last = reading.requests_total, self._last_total
        self._last_total = total
        # The figure covers the last minute: repeating it while idle would draw traffic that is not there.
        idle = total is not None and last is not None and total == last
        self.history.append(None if idle else reading.latency_us.get("0.99"))

    def lines(self, r: Reading) -> list[list[Item]]:
        q = r.latency_us
        p99 = q.get("0.99")
        budget = f"budget {fmt_us(BUDGET_US)}"
        if r.budget_us is not None and abs(r.budget_us - BUDGET_US) > 1e-6:
            budget += f", server {fmt_us(r.budget_us)}"
        return [
            [Item("P50", fmt_us(q.get("0.5")), width=5, value_width=9),
             Item("P90", fmt_us(q.get("0.9")), width=5)],
            [Item("P99", fmt_us(p99), flagged="p99" in r.flags, width=5, value_width=9),
             Item("P99.9", fmt_us(q.get("0.999")), width=5)],
            [Item("", budget if r.latency_count else f"idle · {budget}", note="")],
        ]

    def flagged(self, r: Reading) -> bool:
        return "p99" in r.flags

    def show_extra(self, reading: Reading | None, stale: bool) -> None:
        graph = self.query_one(LatencyGraph)
        graph.history = tuple(self.history)
        graph.stale = stale
