"""Run a Valkyrie server as a child process and learn its addresses (``console --serve``, tests, bench).

The child logs to a file (a full pipe would stall it); its start-up line
``listening http=http://H:P metrics=http://H:P/metrics`` gives the URLs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["ServedServer", "ServeError"]

LISTENING = re.compile(r"listening http=(\S+) metrics=(\S+)")


class ServeError(RuntimeError):
    """The child server exited or never said where it listens; the message carries its log tail."""


class ServedServer:
    """``with ServedServer(config=path) as srv: srv.url, srv.metrics_url`` — stopped (SIGTERM) on exit."""

    def __init__(self, config: str | os.PathLike | None = None, *, port: int = 0, metrics_port: int = 0,
                 token: str | None = None, log_path: str | os.PathLike | None = None, extra_args: tuple[str, ...] = ()):
        self.config = str(config) if config else None
        self.port, self.metrics_port = port, metrics_port
        self.token = token
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="valkyrie-serve-", suffix=".log")[1])
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.metrics_url: str | None = None

    def command(self) -> list[str]:
        """The child's command line."""
        # The console script, when installed, so the child is what `pgrep -f valkyrie-routing` finds.
        script = Path(sys.executable).with_name("valkyrie-routing")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "valkyrie.cli"]
        # The start-up line we read is logged at info.
        cmd += ["--port", str(self.port), "--metrics-port", str(self.metrics_port), "--log-level", "info"]
        if self.config:
            cmd += ["--config", self.config]
        else:
            # A throwaway server: API changes made through it must not land in the default config's store.
            cmd += ["--store", ""]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> ServedServer:
        """Start the child and wait until it listens (not until it is ready: /health says that)."""
        if self.proc is not None:
            raise RuntimeError("this server is already started; call stop() first")
        env = dict(os.environ)
        if self.token:
            env["VALKYRIE_ADMIN_TOKEN"] = self.token
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        finally:
            log.close()
        start_offset = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")[start_offset:]
            m = LISTENING.search(text)
            if m:
                self.url = m.group(1)
                self.metrics_url = m.group(2) if m.group(2) != "off" else None
                return self
            if self.proc.poll() is not None:
                raise ServeError(f"server exited with status {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        self.stop()
        raise ServeError(f"server did not report its address within {timeout:g}s:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Block until /health answers 200 (a cold Numba cache compiles first); ``ServeError`` if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc is None or self.proc.poll() is not None:
                raise ServeError(f"server exited before it was ready:\n{self.log_tail()}")
            time.sleep(0.1)
        raise ServeError(f"server at {self.url} not ready after {timeout:g}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it will not go; returns the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (a crash, for tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def ports(self) -> tuple[int, int | None]:
        """(http port, metrics port) the child listens on."""
        http = int(self.url.rsplit(":", 1)[1]) if self.url else 0
        metrics = int(self.metrics_url.split(":")[2].split("/")[0]) if self.metrics_url else None
        return http, metrics

    def __enter__(self) -> ServedServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
