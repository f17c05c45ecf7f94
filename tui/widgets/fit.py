"""FIT (exact routes): load factor against its target, capacity, entries, collisions, probe lengths."""

from __future__ import annotations

from tui.client import COLLISION_LIMIT, Reading
from tui.format import fmt_num, fmt_pct
from tui.widgets.panel import Item, Panel

__all__ = ["FitPanel"]


class FitPanel(Panel):
    """Collision rate flagged over 10%; the target shows ``live`` when overridden at run time."""

    TITLE = "FIT · exact"

    def lines(self, r: Reading) -> list[list[Item]]:
        live = r.tuning.get("fit_load_factor", {}).get("source") == "live"
        return [
            [Item("load", _load(r.fit_load), width=8, value_width=10),
             Item("target", fmt_num(r.fit_target, 2), accent=live, note="live" if live else "")],
            [Item("capacity", fmt_num(r.fit_capacity), width=8, value_width=10),
             Item("entries", fmt_num(r.fit_entries))],
            [Item("collide", fmt_pct(r.collision_rate, 2), flagged="collisions" in r.flags, width=8,
                  note=f"{r.collision_window}, max {fmt_pct(COLLISION_LIMIT, 0)}")],
            [Item("probes", fmt_num(r.probe_mean, 2), width=8, note="mean"),
             Item("", fmt_num(r.probe_max, 0), note="max")],
        ]

    def flagged(self, r: Reading) -> bool:
        return "collisions" in r.flags


def _load(x: float | None) -> str:
    # A nearly empty table would otherwise read as exactly zero.
    return "<0.001" if x is not None and 0 < x < 0.001 else fmt_num(x, 3)
