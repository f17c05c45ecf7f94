"""The console against real servers: every control drives the server, and the server's state is checked.

Servers run as child processes (``tui.serve.ServedServer``) on loopback ports with their
own config file and route store, so reload, tuning and restarts are the real thing.
"""

import asyncio
import time
from pathlib import Path

import pytest

from tui.app import ConsoleApp
from tui.client import ValkyrieClient
from tui.screens.confirm import ConfirmScreen
from tui.screens.revert import RevertScreen
from tui.screens.tune import TuneScreen
from tui.serve import ServedServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"
TOKEN = "console-test-token"


def write_config(path: Path, *, pending: int = 5000, extra: str = "") -> Path:
    """A loopback config on the example table with its own route store next to it."""
    path.write_text(f'[server]\nhost = "127.0.0.1"\n\n[routing]\nstore_path = "{path.parent / "routes.db"}"\n'
                    f'route_files = ["{EXAMPLE_ROUTES}"]\n\n[routing.lockfree]\nrcu_max_pending_updates = {pending}\n\n'
                    f'[performance.memory]\nheap_profile_path = "{path.parent / "heap.txt"}"\n\n'
                    f'[logging]\nlevel = "info"\n{extra}')
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the control tests (module-wide: start-up is the slow part)."""
    config = write_config(tmp_path_factory.mktemp("console") / "valkyrie.toml")
    srv = ServedServer(config, log_path=config.parent / "server.log").start()
    try:
        srv.wait_ready()
        srv.config_path = config
        yield srv
    finally:
        srv.stop()


async def until(pilot, predicate, timeout=10.0, what="condition"):
    """Let the app run until ``predicate()`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def notice(app, text, severity=None):
    """The first notification containing ``text`` (optionally of one severity), or None."""
    for sev, title, message in app.notices:
        if text in f"{title} {message}" and (severity is None or sev == severity):
            return sev, title, message
    return None


def console(srv, *, token=None, interval=0.25, timeout=1.0):
    app = ConsoleApp(ValkyrieClient(srv.url, srv.metrics_url, token=token, poll_timeout=timeout), interval=interval)
    app.animation_level = "none"
    return app


async def admin(srv, method, path, body=None, token=None):
    """Ask the server directly (the test's own view of its state)."""
    client = ValkyrieClient(srv.url, srv.metrics_url, token=token)
    try:
        return await client._admin(method, path, body)
    finally:
        await client.close()


async def lookups(srv, n=50):
    client = ValkyrieClient(srv.url, srv.metrics_url)
    try:
        for _ in range(n):
            await client.request("GET", "/v1/route/198.51.100.7")
    finally:
        await client.close()


# ---- panels -----------------------------------------------------------------------------------


async def test_panels_show_the_live_server(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await lookups(server)
        await until(pilot, lambda: app.reading is not None and app.reading.latency_us.get("0.99") is not None
                    and app.reading.throughput is not None, what="latency and throughput from live metrics")
        r = app.reading
        health = await admin(server, "GET", "/health")
        assert app.link == "up" and r.epoch == health["epoch"] and r.routes == health["routes"]
        assert r.fit_capacity and r.fit_entries is not None and set(r.cra) == {"ipv4", "ipv6", "name"}
        assert r.rss_bytes > 0 and r.table_bytes > 0 and r.config_source == str(server.config_path)
        assert len(r.tuning) == 8 and not any(p.stale for p in app.main.panels)


# ---- tuning -----------------------------------------------------------------------------------


async def test_set_fit_load_factor_through_the_modal(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None and app.reading.tuning, what="first reading")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), what="tune modal")
        await pilot.press(*"0.6", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm modal")
        assert "fit_load_factor" in app.screen.title_text and "0.6" in app.screen.title_text
        await pilot.press("y")
        await until(pilot, lambda: notice(app, "fit_load_factor = 0.6 in effect"), what="effect seen in metrics")
        tuning = await admin(server, "GET", "/admin/tuning")
        assert tuning["fit_load_factor"] == {"value": 0.6, "source": "live", "file_value": 0.75}
        assert app.reading.fit_target == pytest.approx(0.6)
        assert "fit_load_factor = 0.6" in str(app.main.query_one("#config").query_one("Figures").render())
    await admin(server, "PATCH", "/admin/tuning", {"fit_load_factor": None})


async def test_invalid_value_never_reaches_the_server(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None and app.reading.values, what="first reading")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), what="tune modal")
        await pilot.press(*"0.95")
        await pilot.pause()
        assert app.screen.query_one("#apply").disabled
        assert "(0.1, 0.9]" in str(app.screen.query_one("#problem").render())
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TuneScreen)  # still open, nothing sent
        await pilot.press("escape")
    assert (await admin(server, "GET", "/admin/tuning"))["fit_load_factor"]["source"] == "file"


async def test_server_rejection_shows_the_servers_message(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        # Bypass the modal's own check to see the server's 400 come back as an error notification.
        app._run("tune", lambda: app.client.set_tuning({"rcu_grace_period": "soon"}), {"rcu_grace_period": "soon"})
        await until(pilot, lambda: notice(app, "is not a duration", "error"), what="server's invalid_tuning message")


async def test_set_grace_period_then_revert_it(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None and app.reading.tuning, what="first reading")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), what="tune modal")
        await pilot.press(*"7ms", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm modal")
        await pilot.click("#confirm")
        await until(pilot, lambda: notice(app, "rcu_grace_period = 7ms in effect"), what="grace period in effect")
        assert (await admin(server, "GET", "/admin/tuning"))["rcu_grace_period"] == {
            "value": "7ms", "source": "live", "file_value": "5ms"}
        # Revert: pick the override in the list, confirm.
        await until(pilot, lambda: "rcu_grace_period" in app.live_overrides(), what="override visible")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, RevertScreen), what="revert modal")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm revert")
        await pilot.press("y")
        await until(pilot, lambda: notice(app, "Reverted rcu_grace_period"), what="revert notification")
        tuning = await admin(server, "GET", "/admin/tuning")
        assert tuning["rcu_grace_period"]["source"] == "file" and tuning["rcu_grace_period"]["value"] == "5ms"
        await until(pilot, lambda: not app.live_overrides(), what="override gone from the panels")


async def test_revert_with_no_override_says_so(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None and app.reading.tuning, what="first reading")
        await pilot.press("v")
        await until(pilot, lambda: notice(app, "No live overrides", "warning"), what="no-override warning")


# ---- reload, GC, heap dump, warm-up, palette --------------------------------------------------


async def test_reload_applies_the_edited_file_and_reports_failures(server):
    app = console(server)
    original = server.config_path.read_text()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.reading is not None, what="first reading")
            write_config(server.config_path, pending=4321)
            await pilot.press("r")
            await until(pilot, lambda: notice(app, "Reloaded"), what="reload notification")
            status = await admin(server, "GET", "/config/status")
            assert status["values"]["routing.lockfree.rcu_max_pending_updates"] == 4321
            assert status["last_reload"]["result"] == "ok"
            await until(pilot, lambda: app.reading.last_reload and app.reading.last_reload.get("result") == "ok",
                        what="reload result on the config panel")
            # A broken file: the server keeps its config and says why; so does the console.
            server.config_path.write_text(original + '\n[performance]\nperformance_budget = "100us"\n')
            await pilot.press("r")
            await until(pilot, lambda: notice(app, "exceeds requirement of 82µs", "error"), what="reload error")
            status = await admin(server, "GET", "/config/status")
            assert status["last_reload"]["result"] == "error"
            assert status["values"]["routing.lockfree.rcu_max_pending_updates"] == 4321
            await until(pilot, lambda: app.main.query_one("#config").has_class("-flagged"), what="config flagged")
    finally:
        server.config_path.write_text(original)
        await admin(server, "POST", "/admin/reload")


async def test_force_gc_reports_what_was_freed(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        await pilot.press("c")
        await until(pilot, lambda: notice(app, "GC collected"), what="GC notification")
        _, _, message = notice(app, "GC collected")
        assert "reclaimed" in message and "RSS" in message


async def test_heap_dump_writes_a_file(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        await pilot.press("d")
        await until(pilot, lambda: notice(app, "Heap profile written to"), what="heap dump notification")
        path = Path(notice(app, "Heap profile written to")[2].split(" to ", 1)[1])
        assert path.exists() and path.read_text().startswith("# valkyrie heap profile")


async def test_cache_warmup_or_clear_not_supported(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        await pilot.press("w")
        await until(pilot, lambda: notice(app, "Cache warmup"), what="warm-up answer")
        sev, _, message = notice(app, "Cache warmup")
        # Supported: a success notice; not yet on this server: a warning saying so, never a crash.
        assert (sev == "information" and "warmed" in message) or (sev == "warning" and "not supported" in message)


async def test_command_palette_runs_actions(server):
    app = console(server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"force gc")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: notice(app, "GC collected"), what="GC from the palette")


# ---- admin token ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("console-token") / "valkyrie.toml")
    srv = ServedServer(config, token=TOKEN, log_path=config.parent / "server.log").start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


async def test_admin_token_missing_then_given(token_server):
    app = console(token_server)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None, what="first reading")
        assert app.reading.tuning_error  # GET /admin/tuning answered 401
        await pilot.press("c")
        await until(pilot, lambda: notice(app, "Authorization: Bearer", "error"), what="401 message")
    app = console(token_server, token=TOKEN)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.reading is not None and app.reading.tuning, what="tuning with token")
        await pilot.press("c")
        await until(pilot, lambda: notice(app, "GC collected"), what="GC with token")


# ---- resilience -------------------------------------------------------------------------------


async def test_server_killed_greys_out_then_reconnects_after_restart(tmp_path):
    config = write_config(tmp_path / "valkyrie.toml")
    srv = ServedServer(config, log_path=tmp_path / "server.log").start()
    try:
        srv.wait_ready()
        port, metrics_port = srv.ports
        app = console(srv, interval=0.2, timeout=0.5)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.link == "up" and app.reading.epoch is not None, what="connected")
            before = app.reading
            srv.kill()
            await until(pilot, lambda: app.link == "down", what="disconnected")
            assert all(p.stale and p.has_class("-stale") for p in app.main.panels)
            assert app.main.query_one("#status").has_class("-down")
            assert app.main.query_one("#latency").reading is before  # last good data kept
            assert notice(app, "Lost", "error")
            # Same ports again: the console finds it by itself.
            srv2 = ServedServer(config, port=port, metrics_port=metrics_port, log_path=tmp_path / "server2.log").start()
            try:
                await until(pilot, lambda: app.link == "up", timeout=60, what="reconnected and ready")
                assert not any(p.stale for p in app.main.panels)
                assert notice(app, "Reconnected")
            finally:
                srv2.stop()
    finally:
        srv.stop()


async def test_slow_server_counts_as_disconnected():
    async def hang(reader, writer):
        # Read the request and never answer; returns when the client gives up and closes.
        await reader.read()
        writer.close()

    hung = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    app = ConsoleApp(ValkyrieClient(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/metrics", poll_timeout=0.3,
                                         action_timeout=1.0), interval=0.2)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link == "down", timeout=5, what="timeout turns into disconnected")
            assert "within 0.3s" in app.main.query_one("#status").error
            await pilot.press("c")  # controls fail fast with a message, the UI stays responsive
            await until(pilot, lambda: notice(app, "Force GC failed", "error"), timeout=5, what="GC failure")
    finally:
        hung.close()
