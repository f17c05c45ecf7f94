"""The base of every dashboard panel: a bordered box that renders a ``Reading`` as aligned lines.

A panel draws its figures from ``lines(reading)``; each line is a list of ``Item``
(label, value, flagged). Flagged values are drawn in the theme's error colour with
a ``▲``; a stale panel (server unreachable) draws everything muted so old figures
never pass for live ones. Panels with a chart add widgets in ``compose_extra`` and
feed them in ``show_extra``.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from tui.client import Reading

__all__ = ["Item", "Panel", "Figures"]


@dataclass(frozen=True)
class Item:
    """One figure on a panel line: ``Item("P99", "45.0µs", flagged=False)``."""

    label: str
    value: str
    flagged: bool = False
    width: int = 0  # label column width; 0 = the label and one space
    note: str = ""  # muted text after the value (units, provenance)
    accent: bool = False  # drawn in the accent colour (e.g. a live override)
    value_width: int = 0  # pad the value so the next item lines up


def render_items(items: list[Item], stale: bool) -> Content:
    """One line of items separated by two spaces, muted when stale."""
    muted = "$text-disabled" if stale else "$text-muted"
    parts: list[str | tuple[str, str]] = []
    for i, item in enumerate(items):
        if i:
            parts.append("  ")
        label = item.label.ljust(item.width) if item.width else item.label
        if label:
            parts.append((label + " ", muted))
        if stale:
            style = "$text-disabled"
        elif item.flagged:
            style = "$text-error bold"
        elif item.accent:
            style = "$text-accent bold"
        else:
            style = "bold"
        marker = " ▲" if item.flagged and not stale else ""
        parts.append((item.value, style))
        if marker:
            parts.append((marker, "$text-error bold"))
        if item.note:
            parts.append((" " + item.note, muted))
        pad = item.value_width - len(item.value) - len(marker) - (len(item.note) + 1 if item.note else 0)
        if pad > 0 and i < len(items) - 1:
            parts.append(" " * pad)
    return Content.assemble(*parts)


class Figures(Widget):
    """The text part of a panel: asks its panel for lines on every refresh."""

    DEFAULT_CSS = """
    Figures {
        height: auto;
    }
    """

    def __init__(self, panel: Panel) -> None:
        super().__init__()
        self.panel = panel

    def render(self) -> Content:
        reading = self.panel.reading
        if reading is None:
            if self.panel.stale:
                return Content.styled("no data: the server has not answered yet", "$text-disabled")
            return Content.styled("waiting for the first poll…", "$text-muted")
        return Content("\n").join(render_items(line, self.panel.stale) for line in self.panel.lines(reading))


class Panel(Vertical):
    """A titled box of figures, refreshed whenever ``reading`` or ``stale`` changes."""

    DEFAULT_CSS = """
    Panel {
        height: auto;
        border: round $primary 60%;
        border-title-color: $text-primary;
        border-title-style: bold;
        padding: 0 1;
    }
    Panel.-flagged {
        border: round $error;
        border-title-color: $text-error;
    }
    Panel.-stale {
        border: round $surface-lighten-2;
        border-title-color: $text-disabled;
    }
    """

    TITLE = ""

    reading: reactive[Reading | None] = reactive(None, always_update=True)
    stale: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = self.TITLE

    def compose(self) -> ComposeResult:
        yield Figures(self)
        yield from self.compose_extra()

    def compose_extra(self) -> ComposeResult:
        """Widgets under the figures, e.g. a chart (override)."""
        yield from ()

    def lines(self, reading: Reading) -> list[list[Item]]:
        """The panel's lines for ``reading`` (override)."""
        return []

    def flagged(self, reading: Reading) -> bool:
        """Whether any figure on the panel is past a threshold (override)."""
        return False

    def show_extra(self, reading: Reading | None, stale: bool) -> None:
        """Feed the extra widgets (override)."""

    def on_mount(self) -> None:
        self._repaint()

    def watch_reading(self, reading: Reading | None) -> None:
        self._repaint()

    def watch_stale(self, stale: bool) -> None:
        self._repaint()

    def _repaint(self) -> None:
        self.set_class(self.stale, "-stale")
        self.set_class(not self.stale and self.reading is not None and self.flagged(self.reading), "-flagged")
        if self.is_mounted:
            self.query_one(Figures).refresh(layout=True)
            self.show_extra(self.reading, self.stale)
