"""Command palette: every console action, plus the tunables and overrides that have no key of their own."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.tuning import TUNABLE, describe

__all__ = ["ConsoleCommands"]


class ConsoleCommands(Provider):
    """Commands read from the app at open time, so reverts list the overrides live right now."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = self.app
        cmds: list[tuple[str, str, Callable[[], object]]] = [
            ("Reload config", "POST /admin/reload: re-read the config file the server runs on", app.action_reload),
            ("Force GC", "POST /admin/gc: garbage-collect, reclaim retired snapshots, trim malloc", app.action_gc),
            ("Heap dump", "POST /admin/heap-dump: write a heap profile on the server", app.action_heap_dump),
            ("Cache warmup", "POST /admin/cache/warmup: pre-fill the route cache", app.action_warmup),
            ("Poll now", "refresh every panel without waiting for the next tick", app.action_poll_now),
        ]
        for name in TUNABLE:
            cmds.append((f"Set {name}", describe(name), partial(app.action_tune, name)))
        overrides = app.live_overrides()
        for name, v in overrides.items():
            cmds.append((f"Revert {name}", f"drop the live value {v.get('value')}; back to the file's {v.get('file_value')}",
                         partial(app.revert, name)))
        if len(overrides) > 1:
            cmds.append(("Revert every live override", "every tunable back to the config file's value",
                         partial(app.revert, "*")))
        return cmds

    async def discover(self) -> Hits:
        for text, help_text, callback in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, callback in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
