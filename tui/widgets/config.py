"""Config: the file the server runs on, the last reload's result, and live overrides of it."""

from __future__ import annotations

import textwrap

from tui.client import Reading
from tui.format import fmt_clock
from tui.widgets.panel import Item, Panel

__all__ = ["ConfigPanel", "reload_summary", "shorten"]

# Short names for what triggered a reload, so the line fits a narrow panel.
TRIGGERS = {"POST /admin/reload": "API", "file watch": "watch", "SIGHUP": "SIGHUP"}


def shorten(text: str, width: int) -> str:
    """Keep the end of a path: ``shorten("/a/b/config/x.toml", 12) == "…/x.toml"``-style."""
    if len(text) <= width:
        return text
    tail = text[-(width - 1):]
    cut = tail.find("/")
    return "…" + (tail[cut:] if 0 <= cut < len(tail) - 1 else tail)


def reload_summary(last: dict | None) -> tuple[str, bool, str]:
    """(text, failed, note) describing ``/config/status``'s ``last_reload``."""
    if not last:
        return "none yet", False, ""
    when = fmt_clock(last.get("at"))
    if last.get("result") != "ok":
        # The first problem says what to fix; the error's first line only names the file.
        problems = last.get("problems") or [line.strip().removeprefix("- ") for line in
                                             str(last.get("error", "")).splitlines() if line.strip()][-1:]
        return f"failed {when}", True, str(problems[0]) if problems else ""
    applied, restart = last.get("applied") or [], last.get("restart_required") or []
    parts = [f"{len(applied)} applied"]
    if restart:
        parts.append(f"{len(restart)} restart")
    if not last.get("changed"):
        parts = ["no change"]
    trigger = TRIGGERS.get(last.get("trigger", ""), last.get("trigger", ""))
    return f"ok {when}", False, f"{', '.join(parts)} · {trigger}"


class ConfigPanel(Panel):
    """Where the running config came from and what changed since."""

    TITLE = "Config"

    def lines(self, r: Reading) -> list[list[Item]]:
        width = max(20, (self.content_size.width or 38) - 8)
        source = shorten(r.config_source or "(in-memory config)", width)
        text, failed, note = reload_summary(r.last_reload)
        rows = [
            [Item("file", source, width=7)],
            [Item("loaded", fmt_clock(r.loaded_at), width=7)],
            [Item("reload", text, flagged=failed, width=7, note=note if not failed else "")],
        ]
        if failed and note:
            # The server's own words, wrapped onto at most two lines.
            for chunk in textwrap.wrap(note, width + 7, max_lines=2, placeholder=" …"):
                rows.append([Item("", chunk)])
        overrides = live_overrides(r)
        if not overrides:
            rows.append([Item("live", "none", width=7, note="(all values from the file)")])
        for i, (name, value) in enumerate(overrides.items()):
            rows.append([Item("live" if i == 0 else "", f"{name} = {value}", accent=True, width=7)])
        if r.tuning_error:
            rows.append([Item("tuning", "needs admin token", flagged=True, width=7)])
        return rows

    def flagged(self, r: Reading) -> bool:
        return bool(r.last_reload and r.last_reload.get("result") != "ok")


def live_overrides(r: Reading) -> dict[str, str]:
    """Live overrides by short name, formatted as the server shows them."""
    out = {name: str(v.get("value")) for name, v in r.tuning.items() if v.get("source") == "live"}
    if not out:
        out = {k.rsplit(".", 1)[-1]: str(v) for k, v in r.live_overrides.items()}
    return out
