"""RCU: the live epoch, retired snapshots awaiting reclamation, the last grace period, the oldest reader."""

from __future__ import annotations

from tui.client import GRACE_LIMIT_S, Reading
from tui.format import fmt_num, fmt_seconds
from tui.widgets.panel import Item, Panel

__all__ = ["RcuPanel"]


class RcuPanel(Panel):
    """Grace period flagged over 50ms; the configured grace shows ``live`` when overridden."""

    TITLE = "RCU · snapshots"

    def lines(self, r: Reading) -> list[list[Item]]:
        tuned = r.tuning.get("rcu_grace_period", {})
        live = tuned.get("source") == "live"
        return [
            [Item("epoch", fmt_num(r.rcu_epoch), width=7, value_width=9),
             Item("pending", fmt_num(r.pending_snapshots))],
            [Item("grace", fmt_seconds(r.last_grace_s), flagged="grace" in r.flags, width=7,
                  note=f"last, max {fmt_seconds(GRACE_LIMIT_S)}")],
            [Item("setting", str(tuned.get("value", "—")), accent=live, width=7, note="live" if live else "")],
            [Item("reader", fmt_seconds(r.oldest_reader_s), width=7, note="oldest")],
        ]

    def flagged(self, r: Reading) -> bool:
        return "grace" in r.flags
