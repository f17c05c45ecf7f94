"""CRA (prefix routes): nodes, bytes and fragmentation of each radix arena."""

from __future__ import annotations

from tui.client import FRAGMENTATION_LIMIT, Reading
from tui.format import DASH, fmt_bytes, fmt_count, fmt_pct
from tui.widgets.panel import Item, Panel

__all__ = ["CraPanel"]


class CraPanel(Panel):
    """One line per arena (ipv4, ipv6, name); fragmentation flagged over 30%."""

    TITLE = f"CRA · prefixes (frag ≤ {fmt_pct(FRAGMENTATION_LIMIT, 0)})"

    def lines(self, r: Reading) -> list[list[Item]]:
        if not r.cra:
            return [[Item("", DASH, note="no CRA metrics yet")]]
        rows = [[Item(f"{'arena':<5}{'nodes':>8}{'bytes':>10}  frag", "")]]
        for name, fam in r.cra.items():
            rows.append([Item(f"{name:<5}", f"{fmt_count(fam.nodes):>7}{fmt_bytes(fam.nbytes):>10}"),
                         Item("", fmt_pct(fam.fragmentation), flagged=f"fragmentation:{name}" in r.flags)])
        return rows

    def flagged(self, r: Reading) -> bool:
        return "fragmentation" in r.flags
