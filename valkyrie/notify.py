"""systemd's sd_notify protocol over ``$NOTIFY_SOCKET``, with the stdlib only.

Under ``Type=notify`` systemd waits for ``READY=1`` before it counts the
service as started, and with ``WatchdogSec=`` it restarts the service when
``WATCHDOG=1`` pings stop. Outside systemd (no ``$NOTIFY_SOCKET``) every
call is a no-op that returns False, so the server can call these
unconditionally.
"""

import asyncio
import logging
import os
import socket
import time

__all__ = ["notify", "ready", "reloading", "stopping", "watchdog", "status", "watchdog_interval", "watchdog_loop"]

log = logging.getLogger("valkyrie.notify")


def _address(raw):
    """The socket address for ``$NOTIFY_SOCKET``: '@name' is Linux's abstract namespace (a leading NUL)."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    return raw


def notify(state_str):
    """Send one notification such as ``"READY=1"``; True when sent, False without a socket or on error."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if not raw or not (raw.startswith("/") or raw.startswith("@")):
        # vsock: and other transports are not used by the units we ship.
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(raw))
            sock.sendall(state_str.encode("utf-8"))
    except OSError as exc:
        # A failed notification must never take the server down; systemd's timeouts will say why.
        log.warning("WARN sd_notify %r to %s failed: %s", state_str.split("\n", 1)[0], raw, exc)
        return False
    return True


def ready(status_text=None):
    """Tell systemd start-up is complete (``READY=1``), optionally with a STATUS line."""
    return notify("READY=1" + (f"\nSTATUS={status_text}" if status_text else ""))


def reloading():
    """Tell systemd a config reload started; send ``ready()`` when it ends."""
    # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to its request; older ones ignore it.
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping():
    """Tell systemd the service is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1")


def watchdog():
    """One watchdog keep-alive (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def status(text):
    """A free-form status line shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog_interval():
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None when no watchdog applies to this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                # The watchdog is meant for another process (e.g. the one that exec'd us).
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


async def watchdog_loop(interval):
    """Ping ``WATCHDOG=1`` at half the watchdog timeout ``interval`` (seconds) until cancelled; no-op for None."""
    if not interval:
        return
    # Pinging from the event loop makes the watchdog measure what matters: a blocked loop stops the pings.
    period = interval / 2
    while True:
        watchdog()
        await asyncio.sleep(period)
