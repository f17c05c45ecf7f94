"""sd_notify: datagrams reach a real socket the test binds, and a real server speaks the protocol systemd expects."""

import asyncio
import os
import signal
import socket
import time
import uuid

import pytest

from tests.realserver import RealServer, http, write_config
from valkyrie import notify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound AF_UNIX datagram socket at a filesystem path, exported as $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_sends_each_state_to_the_socket(notify_socket):
    assert notify.ready()
    assert notify_socket.recv(4096) == b"READY=1"
    assert notify.ready("serving epoch 3")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving epoch 3"
    assert notify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"
    assert notify.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notify.reloading()
    lines = notify_socket.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    # systemd matches a reload to its request by CLOCK_MONOTONIC microseconds.
    assert lines[1].startswith("MONOTONIC_USEC=") and abs(int(lines[1].split("=")[1]) - time.monotonic_ns() // 1000) < 5e6


def test_abstract_namespace_socket(monkeypatch):
    name = f"valkyrie-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.notify("STATUS=abstract")
        assert sock.recv(4096) == b"STATUS=abstract"


def test_without_socket_every_call_is_a_quiet_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False and notify.stopping() is False
    # A socket that has gone away is reported, never raised: the server must keep serving.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify.watchdog() is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    # Meant for another process: not ours to ping.
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert notify.watchdog_interval() is None


async def test_watchdog_loop_pings_at_half_the_interval(notify_socket):
    notify_socket.setblocking(False)
    task = asyncio.create_task(notify.watchdog_loop(0.2))
    await asyncio.sleep(0.55)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = []
    while True:
        try:
            pings.append(notify_socket.recv(4096))
        except BlockingIOError:
            break
    # One at once, then every 0.1s: about 6 in 0.55s; allow for a slow, busy machine.
    assert 3 <= len(pings) <= 7 and set(pings) == {b"WATCHDOG=1"}
    assert await notify.watchdog_loop(None) is None


def _drain(sock, until, deadline):
    """Messages received until one satisfies ``until`` or ``deadline`` (monotonic) passes."""
    got = []
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except (socket.timeout, BlockingIOError):
            continue
        got.append(msg)
        if until(msg):
            break
    return got


def test_real_server_notifies_ready_watchdog_reload_and_stop(tmp_path):
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    config = write_config(tmp_path)
    server = RealServer(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "600000"})
    try:
        server.start()
        got = _drain(sock, lambda m: "READY=1" in m.split("\n"), time.monotonic() + 240)
        assert any("READY=1" in m.split("\n") for m in got), f"no READY=1 (got {got}):\n{server.log_tail()}"
        # READY=1 means serving: /health must already answer 200.
        status, body = http("GET", server.url + "/health")
        assert status == 200 and body["status"] == "ok", body

        # WATCHDOG_USEC=0.6s: pings every 0.3s, so at least 3 within 1.5s.
        pings = _drain(sock, lambda m: False, time.monotonic() + 1.5)
        assert sum(m == "WATCHDOG=1" for m in pings) >= 3, pings

        # systemctl reload = SIGHUP: RELOADING=1 then READY=1 once the reload is done.
        server.proc.send_signal(signal.SIGHUP)
        got = _drain(sock, lambda m: "READY=1" in m.split("\n"), time.monotonic() + 15)
        states = [m.split("\n")[0] for m in got if m != "WATCHDOG=1"]
        assert states[:2] == ["RELOADING=1", "READY=1"], got

        server.proc.send_signal(signal.SIGTERM)
        got = _drain(sock, lambda m: m == "STOPPING=1", time.monotonic() + 15)
        assert "STOPPING=1" in got, got
        assert server.proc.wait(20) == 0
    finally:
        server.stop()
        sock.close()
