"""The dashboard: connection line, one panel per subsystem, and the key bindings in the footer."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from tui.client import Reading
from tui.widgets.config import ConfigPanel
from tui.widgets.cra import CraPanel
from tui.widgets.fit import FitPanel
from tui.widgets.latency import LatencyPanel
from tui.widgets.memory import MemoryPanel
from tui.widgets.panel import Panel
from tui.widgets.rcu import RcuPanel
from tui.widgets.status import ConnectionBar
from tui.widgets.traffic import TrafficPanel
from tui.widgets.tuning import TuningPanel

__all__ = ["MainScreen"]


class MainScreen(Screen):
    """Shows the latest good reading; greys it out while the server is unreachable or restarting."""

    def __init__(self, url: str = "", interval: float = 1.0) -> None:
        super().__init__()
        self.url, self.interval = url, interval

    def compose(self) -> ComposeResult:
        bar = ConnectionBar(id="status")
        bar.url, bar.interval = self.url, self.interval
        yield bar
        with Horizontal(id="panels"):
            with Vertical(id="left", classes="column"):
                yield LatencyPanel(id="latency")
                yield TrafficPanel(id="traffic")
                yield FitPanel(id="fit")
                yield MemoryPanel(id="memory")
            with Vertical(id="right", classes="column"):
                yield CraPanel(id="cra")
                yield RcuPanel(id="rcu")
                yield ConfigPanel(id="config")
                yield TuningPanel(id="tuning")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        # Every binding must stay visible at 80 columns: tighten the footer there.
        self.query_one(Footer).compact = event.size.width < 100

    @property
    def panels(self) -> list[Panel]:
        """Every panel on the dashboard."""
        return list(self.query(Panel))

    def _bar(self) -> ConnectionBar | None:
        # None while the screen is composing or being torn down at exit.
        bars = self.query(ConnectionBar)
        return bars.first() if bars else None

    def show(self, reading: Reading) -> None:
        """A good reading from a ready server: chart it and show it live."""
        bar = self._bar()
        if bar is None:
            return
        for chart in (*self.query(LatencyPanel), *self.query(TrafficPanel)):
            chart.record(reading)
        for panel in self.panels:
            panel.stale = False
            panel.reading = reading
        bar.reading, bar.link, bar.error = reading, "up", ""
        self.set_class(False, "-stale")

    def show_starting(self, reading: Reading) -> None:
        """The server answers but is not ready (starting or restarting): keep the last good data, greyed."""
        bar = self._bar()
        if bar is None:
            return
        bar.link, bar.error = "starting", ""
        bar.reading = reading
        for panel in self.panels:
            if panel.reading is None:
                panel.reading = reading
            panel.stale = True
        self.set_class(True, "-stale")

    def show_down(self, error: str, since: float) -> None:
        """No answer: say so, keep the last good data greyed."""
        bar = self._bar()
        if bar is None:
            return
        if bar.link != "down":
            bar.down_since = since
        bar.link, bar.error = "down", error
        for panel in self.panels:
            panel.stale = True
        self.set_class(True, "-stale")
