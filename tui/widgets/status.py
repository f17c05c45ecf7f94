"""The connection line at the top: which server, whether it answers, and since when it does not."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from tui.client import Reading
from tui.format import fmt_age, fmt_clock

__all__ = ["ConnectionBar"]


class ConnectionBar(Widget):
    """``● up`` / ``◐ starting`` / ``○ DISCONNECTED`` with the server's address, epoch and age of the data."""

    DEFAULT_CSS = """
    ConnectionBar {
        height: auto;
        padding: 0 1;
        background: $panel;
    }
    ConnectionBar.-down {
        background: $error 35%;
    }
    ConnectionBar.-starting {
        background: $warning 30%;
    }
    """

    link: reactive[str] = reactive("connecting")
    url: reactive[str] = reactive("")
    reading: reactive[Reading | None] = reactive(None)
    error: reactive[str] = reactive("")
    down_since: reactive[float | None] = reactive(None)
    interval: reactive[float] = reactive(1.0)

    def watch_link(self, link: str) -> None:
        self.set_class(link == "down", "-down")
        self.set_class(link == "starting", "-starting")

    def render(self) -> Content:
        r = self.reading
        if self.link == "down":
            last = f" · data from {fmt_clock(r.wall)}" if r else ""
            # Most useful first: on a narrow terminal the error text wraps onto a second line.
            return Content.assemble(("○ DISCONNECTED", "$text-error bold"), f" {self.url} since {fmt_clock(self.down_since)}",
                                    f" · retrying every {self.interval:g}s{last}", (f" · {self.error}", "$text-muted"))
        if self.link == "connecting" or r is None:
            return Content.assemble(("… connecting", "$text-warning bold"), f" to {self.url}")
        if self.link == "starting":
            detail = f": {r.detail}" if r.detail else ""
            return Content.assemble(("◐ starting", "$text-warning bold"), f" {self.url} · server {r.status}{detail}")
        parts: list[str | tuple[str, str]] = [("● up", "$text-success bold"), f" {self.url}"]
        # (fact, keep rank): on a narrow terminal the highest ranks go first so the line stays one line.
        facts = []
        if r.epoch is not None:
            facts.append((f"epoch {r.epoch}", 0))
        if r.routes is not None:
            facts.append((f"{r.routes} routes", 1))
        if r.nodes is not None:
            facts.append((f"{r.nodes} nodes", 3))
        if r.uptime_s is not None:
            facts.append((f"up {fmt_age(r.uptime_s)}", 2))
        facts.append((f"at {fmt_clock(r.wall)}", 4))
        if r.metrics_error:
            facts.append((f"metrics: {r.metrics_error}", 0))
        room = self.size.width - 2 - len(f"● up {self.url}")
        while len(facts) > 1 and sum(len(f) + 3 for f, _ in facts) > room:
            facts.remove(max(facts, key=lambda fact: fact[1]))
        parts.append((" · " + " · ".join(f for f, _ in facts), "$text-muted"))
        return Content.assemble(*parts)
