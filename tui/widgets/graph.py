"""A bar chart of P99 latency history with the guide's 82µs budget drawn across it."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from tui.client import BUDGET_US
from tui.format import fmt_us

__all__ = ["LatencyGraph"]

BLOCKS = " ▁▂▃▄▅▆▇█"
GUTTER = 8


class LatencyGraph(Widget):
    """One column per poll (newest on the right); bars over the budget are drawn in the error colour."""

    DEFAULT_CSS = """
    LatencyGraph {
        height: 4;
        min-height: 3;
    }
    """

    history: reactive[tuple[float | None, ...]] = reactive(tuple)
    budget_us: reactive[float] = reactive(BUDGET_US)
    stale: reactive[bool] = reactive(False)

    def render(self) -> Content:
        width = max(1, self.content_size.width - GUTTER)
        height = max(1, self.content_size.height)
        return Content("\n").join(chart_lines(self.history, width, height, self.budget_us, self.stale))


def chart_lines(history: Sequence[float | None], width: int, height: int, budget: float,
                stale: bool = False) -> list[Content]:
    """The chart as ``height`` lines of ``GUTTER + width`` cells (pure, so tests can call it)."""
    data = list(history)[-width:]
    data = [None] * (width - len(data)) + data
    known = [v for v in data if v is not None]
    top = max(budget * 1.5, max(known) * 1.1 if known else 0.0)
    eighths = height * 8
    # The budget sits on the row whose band contains it.
    budget_row = height - 1 - min(height - 1, int(budget / top * height))
    bar, over, line, muted = (("$text-disabled",) * 4 if stale else
                              ("$text-success", "$text-error", "$text-warning", "$text-muted"))
    lines = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        if row == 0:
            label = fmt_us(top)
        elif row == budget_row:
            label = fmt_us(budget)
        elif row == height - 1:
            label = "0"
        else:
            label = ""
        tick = " ┤" if label else " │"
        parts: list[str | tuple[str, str]] = [(label.rjust(GUTTER - 2) + tick, line if row == budget_row else muted)]
        for v in data:
            filled = 0 if v is None else min(8, max(0, round(v / top * eighths) - floor))
            if filled == 0 and row == budget_row:
                parts.append(("┄", line))
            elif filled == 0:
                parts.append(" ")
            else:
                parts.append((BLOCKS[filled], over if v > budget else bar))
        lines.append(Content.assemble(*parts))
    return lines


def spark(history: Sequence[float | None], width: int) -> str:
    """One row of bars from zero to the largest value, newest on the right: ``spark([0, 5, 10], 3) == " ▄█"``."""
    data = list(history)[-width:]
    top = max((v for v in data if v), default=0.0)
    cells = []
    for v in data:
        if not v or not top:
            cells.append(" ")
        else:
            # Any traffic at all shows at least the lowest bar.
            cells.append(BLOCKS[max(1, round(v / top * 8))])
    return "".join(cells).rjust(width)
