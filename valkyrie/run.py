"""Running the server process: bind the API and metrics ports, wait for a stop signal, shut down cleanly."""

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from valkyrie import notify
from valkyrie.admin import TOKEN_ENV, is_loopback
from valkyrie.connections import CappedRunner
from valkyrie.maintenance import force_reclaim, write_heap_profile
from valkyrie.reload import reload_config
from valkyrie.server import BOOT_FAILED, BOOTED, ServerState, create_app, create_metrics_app

__all__ = ["serve", "hold_early_signals"]

_EARLY = []


def hold_early_signals():
    """Queue SIGHUP/USR1/USR2 that arrive before the event loop is up (their default action kills)."""
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, frame: _EARLY.append(signum))


def _install_signals(loop, state, stop):
    async def reload_and_tell_systemd():
        notify.reloading()
        try:
            await reload_config(state, "SIGHUP")
        finally:
            notify.ready()

    def on_hup():
        loop.create_task(reload_and_tell_systemd())

    def on_usr1():
        _in_background(loop, "SIGUSR1 heap profile", write_heap_profile, state)

    def on_usr2():
        _in_background(loop, "SIGUSR2 reclamation", force_reclaim, state, "SIGUSR2")

    handlers = {signal.SIGHUP: on_hup, signal.SIGUSR1: on_usr1, signal.SIGUSR2: on_usr2,
                signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
    for sig, fn in handlers.items():
        loop.add_signal_handler(sig, fn)
    while _EARLY:
        handlers[_EARLY.pop(0)]()

log = logging.getLogger("valkyrie.run")


def _in_background(loop, what, fn, *args):
    """Run ``fn`` in a thread; a failure is logged (nobody awaits a signal's work)."""
    def done(future):
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            log.error("ERROR %s failed: %s", what, exc)

    loop.run_in_executor(None, fn, *args).add_done_callback(done)


async def _start_site(runner, host, port, what):
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    try:
        await site.start()
    except OSError as exc:
        raise SystemExit(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    host, port = runner.addresses[0][:2]
    return host, port


async def serve(config, *, on_ready=None):
    """Serve until SIGTERM/SIGINT (exit status 0) or a failed start (status 2)."""
    host = config["server.host"]
    try:
        state = ServerState(config)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if state.admin_token is None and not is_loopback(host):
        raise SystemExit(f"refusing to serve update and admin endpoints on {host} without an admin token: "
                         f"set {TOKEN_ENV} or [server] admin_token_file, or bind to 127.0.0.1")
    log.info("configuration validation passed for %s", config.source or "the built-in defaults")
    # Blocking work (config and route file reads, heap profiles, forced GC) runs on these threads.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=config["server.blocking_threads"], thread_name_prefix="valkyrie-blocking"))
    app = create_app(config, state=state)
    runners = [CappedRunner(app, limit=lambda: state.config["server.max_connections"],
                            on_refused=lambda: state.metrics.count_error("too_many_connections"),
                            access_log=None, keepalive_timeout=config["server.keepalive_timeout"])]
    try:
        http = await _start_site(runners[0], host, config["server.port"], "HTTP")
        metrics_at = None
        if config["observability.metrics.enable"]:
            runners.append(web.AppRunner(create_metrics_app(state), access_log=None))
            metrics_at = await _start_site(runners[1], config["observability.metrics.host"],
                                           config["observability.metrics.port"], "metrics")
        log.info("listening http=http://%s:%d metrics=%s", *http,
                 f"http://{metrics_at[0]}:{metrics_at[1]}{config['observability.metrics.path']}" if metrics_at else "off")
        if on_ready is not None:
            on_ready(http, metrics_at)
        stop = asyncio.Event()
        _install_signals(asyncio.get_running_loop(), state, stop)
        watchdog = asyncio.create_task(notify.watchdog_loop(notify.watchdog_interval()))
        stop_wait = asyncio.create_task(stop.wait())
        boot_wait = asyncio.create_task(app[BOOT_FAILED].wait())
        booted = asyncio.create_task(app[BOOTED].wait())
        # READY=1 only once lookups are served: systemd then starts dependants against a working router.
        # Cancelled when start-up fails or a stop comes first: then there is nothing to announce.
        booted.add_done_callback(
            lambda t: t.cancelled() or notify.ready(f"serving epoch {state.rcu.current.epoch}"))
        await asyncio.wait({stop_wait, boot_wait}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop_wait, boot_wait, booted, watchdog):
            task.cancel()
        notify.stopping()
        if app[BOOT_FAILED].is_set():
            log.error("ERROR start-up failed: %s", state.boot_error)
            return 2
        log.info("stopping")
        return 0
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
