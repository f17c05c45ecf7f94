"""Running the server process: bind the API and metrics ports, wait for a stop signal, shut down cleanly."""

import asyncio
import logging
import signal

from aiohttp import web

from valkyrie.server import BOOT_FAILED, ServerState, create_app, create_metrics_app

__all__ = ["serve"]

log = logging.getLogger("valkyrie.run")


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
    state = ServerState(config)
    app = create_app(config, state=state)
    runners = [web.AppRunner(app, access_log=None, keepalive_timeout=config["server.keepalive_timeout"])]
    try:
        http = await _start_site(runners[0], config["server.host"], config["server.port"], "HTTP")
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stop_wait = asyncio.create_task(stop.wait())
        boot_wait = asyncio.create_task(app[BOOT_FAILED].wait())
        await asyncio.wait({stop_wait, boot_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        boot_wait.cancel()
        if app[BOOT_FAILED].is_set():
            log.error("ERROR start-up failed: %s", state.boot_error)
            return 2
        log.info("stopping")
        return 0
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
