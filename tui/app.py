"""The Valkyrie operator console: polls a server about once a second and drives its admin API.

Polling runs in a worker that posts ``Polled`` / ``PollFailed`` back; admin calls run in
workers that post ``ActionDone`` / ``ActionFailed``. Widgets are only touched from
message handlers, so the UI never waits on the network.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from tui.client import Reading, ServerError, Unreachable, ValkyrieClient
from tui.commands import ConsoleCommands
from tui.format import fmt_bytes
from tui.messages import ActionDone, ActionFailed, Polled, PollFailed
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.revert import ALL, RevertScreen
from tui.screens.tune import TuneScreen
from valkyrie.units import parse_duration

__all__ = ["ConsoleApp"]

# What a live change does, said before the operator confirms it.
EFFECTS = {
    "fit_load_factor": "The server rebuilds the FIT at this load factor and publishes it as a new snapshot; "
                       "readers never wait. Watch load and capacity on the FIT panel.",
    "fit_capacity": "The server rebuilds the FIT with this many slots and publishes it as a new snapshot.",
    "rcu_grace_period": "Retired snapshots are kept at least this long after their last reader leaves. "
                        "Watch the grace period on the RCU panel.",
}
WATCH_SECONDS = 15.0


class ConsoleApp(App[int]):
    """Attach to one server (``client``); ``poll=False`` shows only what is fed to ``feed``."""

    CSS_PATH = "app.tcss"
    TITLE = "Valkyrie console"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    BINDINGS = [
        Binding("r", "reload", "Reload"),
        Binding("l", "tune('fit_load_factor')", "Load factor"),
        Binding("g", "tune('rcu_grace_period')", "Grace"),
        Binding("v", "revert", "Revert"),
        Binding("c", "gc", "GC"),
        Binding("d", "heap_dump", "Heap"),
        Binding("w", "warmup", "Warmup"),
        Binding("q", "quit", "Quit"),
    ]

    link: reactive[str] = reactive("connecting")
    reading: reactive[Reading | None] = reactive(None)

    def __init__(self, client: ValkyrieClient | None = None, *, interval: float = 1.0, poll: bool = True,
                 note: str | None = None) -> None:
        super().__init__()
        self.client = client
        self.interval = interval
        self.poll = poll and client is not None
        self.note = note
        self.main = MainScreen(client.url if client else "(recorded data)", interval)
        self._wake = asyncio.Event()
        self._watching: tuple[str, object, float] | None = None
        self._last_good: Reading | None = None
        self.notices: deque[tuple[str, str, str]] = deque(maxlen=200)

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Show a toast and keep it in ``notices`` as ``(severity, title, message)``.

        Markup is off by default: server messages carry brackets such as ``(0.1, 0.9]`` or ``[server]``.
        """
        self.notices.append((severity, title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # ---- lifecycle and polling -------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(self.main)
        if self.note:
            self.notify(self.note, timeout=8)
        if self.poll:
            self.poll_loop()

    async def on_unmount(self) -> None:
        if self.client is not None:
            await self.client.close()

    @work(exclusive=True, group="poll")
    async def poll_loop(self) -> None:
        """Poll every ``interval`` seconds (or when woken) and post what came back."""
        assert self.client is not None
        while True:
            started = time.monotonic()
            try:
                reading = await self.client.poll()
            except Unreachable as exc:
                self.post_message(PollFailed(str(exc), time.time()))
            else:
                self.post_message(Polled(reading))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.05, self.interval - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass

    def feed(self, reading: Reading) -> None:
        """Show ``reading`` as if a poll had returned it (recorded data, tests)."""
        self.on_polled(Polled(reading))

    def feed_failure(self, error: str, wall: float) -> None:
        """Show a failed poll (recorded data, tests)."""
        self.on_poll_failed(PollFailed(error, wall))

    @on(Polled)
    def on_polled(self, message: Polled) -> None:
        if not self.main.is_attached:
            # A poll that lands while the app starts or shuts down has nowhere to go.
            return
        reading = message.reading
        was = self.link
        if reading.ready:
            self.link = "up"
            self.reading = self._last_good = reading
            self.main.show(reading)
            self._check_watch(reading)
        else:
            self.link = "starting"
            self.main.show_starting(reading)
        if was == "down":
            self.notify(f"Reconnected to {self.main.url}: server {reading.status}", title="Connection")

    @on(PollFailed)
    def on_poll_failed(self, message: PollFailed) -> None:
        if not self.main.is_attached:
            return
        if self.link != "down":
            self.notify(f"Lost {self.main.url}: {message.error}", title="Connection", severity="error")
        self.link = "down"
        self.main.show_down(message.error, message.wall)

    def action_poll_now(self) -> None:
        """Poll now instead of at the next tick."""
        self._wake.set()

    # ---- admin actions ---------------------------------------------------------------------------

    def _run(self, action: str, call: Callable[[], Awaitable[dict]], request: dict | None = None) -> None:
        if self.client is None:
            self.notify("Not attached to a server", severity="error")
            return
        self._admin(action, call, request)

    @work(group="admin")
    async def _admin(self, action: str, call: Callable[[], Awaitable[dict]], request: dict | None) -> None:
        try:
            result = await call()
        except ServerError as exc:
            self.post_message(ActionFailed(action, exc.message, exc.status, exc.code))
        except Unreachable as exc:
            self.post_message(ActionFailed(action, str(exc)))
        else:
            self.post_message(ActionDone(action, result, request))

    def action_reload(self) -> None:
        """Ask the server to re-read its config file."""
        self._run("reload", lambda: self.client.reload())

    def action_gc(self) -> None:
        """Force GC and RCU reclamation on the server."""
        self._run("gc", lambda: self.client.gc())

    def action_heap_dump(self) -> None:
        """Have the server write a heap profile."""
        self._run("heap_dump", lambda: self.client.heap_dump())

    def action_warmup(self) -> None:
        """Ask the server to pre-fill its route cache."""
        self._run("warmup", lambda: self.client.cache_warmup())

    def action_tune(self, name: str) -> None:
        """Ask for a new value of ``name``, confirm it, then set it live."""
        reading = self.reading or self._last_good
        current = reading.tuning.get(name) if reading else None
        values = reading.values if reading else None

        def confirmed(ok: bool | None, value: object) -> None:
            if ok:
                self._run("tune", lambda: self.client.set_tuning({name: value}), {name: value})

        def chosen(value: object) -> None:
            if value is None:
                return
            was = f"{current.get('value')} ({current.get('source')})" if current else "unknown"
            self.push_screen(ConfirmScreen(f"Set {name} to {value} live? (now {was})", EFFECTS.get(name, "")),
                             lambda ok: confirmed(ok, value))

        self.push_screen(TuneScreen(name, current, values), chosen)

    def live_overrides(self) -> dict[str, dict]:
        """Tunables currently overridden live, as ``GET /admin/tuning`` shows them."""
        reading = self.reading or self._last_good
        if reading is None:
            return {}
        return {name: v for name, v in reading.tuning.items() if v.get("source") == "live"}

    def action_revert(self) -> None:
        """Pick a live override and put its key back to the file's value."""
        overrides = self.live_overrides()
        if not overrides:
            self.notify("No live overrides: every tunable has its config file value", severity="warning")
            return
        self.push_screen(RevertScreen(overrides), lambda name: self.revert(name) if name else None)

    def revert(self, name: str) -> None:
        """Confirm, then revert ``name`` (or every override for ``ALL``) to the file's value."""
        overrides = self.live_overrides()
        names = list(overrides) if name == ALL else [name]
        detail = ", ".join(f"{n}: {overrides.get(n, {}).get('value')} → {overrides.get(n, {}).get('file_value')}"
                           for n in names)

        def confirmed(ok: bool | None) -> None:
            if ok:
                body = {n: None for n in names}
                self._run("revert", lambda: self.client.set_tuning(body), body)

        self.push_screen(ConfirmScreen(f"Revert {', '.join(names)} to the config file's value?", detail), confirmed)

    @on(ActionDone)
    def on_action_done(self, message: ActionDone) -> None:
        result, action = message.result, message.action
        if action == "reload":
            applied, restart = result.get("applied") or [], result.get("restart_required") or []
            what = f"applied {', '.join(k.rsplit('.', 1)[-1] for k in applied)}" if applied else "no live key changed"
            if restart:
                what += f"; restart needed for {', '.join(k.rsplit('.', 1)[-1] for k in restart)}"
            self.notify(f"Reloaded {result.get('file')}: {what}", title="Config reload")
        elif action == "tune":
            (name, value), = message.request.items()
            self._watching = (name, value, time.monotonic() + WATCH_SECONDS)
            self.notify(f"{name} = {value} set live (epoch {result.get('epoch')}); watching for the effect",
                        title="Tuning")
        elif action == "revert":
            names = ", ".join(message.request)
            self.notify(f"Reverted {names} to the config file's value (epoch {result.get('epoch')})", title="Tuning")
        elif action == "gc":
            self.notify(f"GC collected {result.get('gc_collected_objects')} objects, reclaimed "
                        f"{result.get('reclaimed_snapshots')} snapshots ({fmt_bytes(result.get('reclaimed_bytes'))}); "
                        f"RSS {fmt_bytes(result.get('rss_before_bytes'))} → {fmt_bytes(result.get('rss_after_bytes'))}",
                        title="Force GC")
        elif action == "heap_dump":
            self.notify(f"Heap profile written to {result.get('path')}", title="Heap dump", timeout=10)
        elif action == "warmup":
            detail = ", ".join(f"{k} {v}" for k, v in result.items() if not isinstance(v, (dict, list)))
            self.notify(f"Route cache warmed: {detail}" if detail else "Route cache warmed", title="Cache warmup")
        self.action_poll_now()

    @on(ActionFailed)
    def on_action_failed(self, message: ActionFailed) -> None:
        titles = {"reload": "Config reload failed", "tune": "Tuning rejected", "revert": "Revert failed",
                  "gc": "Force GC failed", "heap_dump": "Heap dump failed", "warmup": "Cache warmup failed"}
        if message.action == "warmup" and message.status in (404, 405):
            self.notify("Cache warmup is not supported by this server (no POST /admin/cache/warmup)",
                        title="Cache warmup", severity="warning")
            return
        self.notify(message.message, title=titles.get(message.action, "Failed"), severity="error", timeout=10)

    def _check_watch(self, reading: Reading) -> None:
        """Say once when a value just set live shows up in the server's own figures."""
        if self._watching is None:
            return
        name, value, deadline = self._watching
        tuned = reading.tuning.get(name, {})
        seen = False
        if name == "fit_load_factor" and reading.fit_target is not None:
            seen = abs(reading.fit_target - float(value)) < 1e-9
            effect = (f"load {reading.fit_load:.3g} of capacity {reading.fit_capacity:.0f}, "
                      f"epoch {reading.rcu_epoch:.0f}") if seen and reading.fit_load is not None else ""
        elif name == "rcu_grace_period" and "value" in tuned:
            seen = _same_duration(tuned["value"], value)
            effect = f"last grace period {reading.last_grace_s * 1e3:.2f}ms" if reading.last_grace_s is not None else ""
        else:
            seen = str(tuned.get("value")) == str(value)
            effect = ""
        if seen:
            self._watching = None
            self.notify(f"{name} = {value} in effect" + (f": {effect}" if effect else ""), title="Tuning")
        elif time.monotonic() > deadline:
            self._watching = None
            self.notify(f"{name} = {value} was accepted but is not visible in the server's figures yet",
                        title="Tuning", severity="warning")


def _same_duration(a: object, b: object) -> bool:
    try:
        return abs(parse_duration(str(a)) - parse_duration(str(b))) < 1e-12
    except ValueError:
        return str(a) == str(b)
