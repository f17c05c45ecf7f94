"""A real ``valkyrie-routing`` process for integration tests: config files, start/stop, log capture, plain HTTP.

Every test that needs a server process (signals, exit codes, file watching, sd_notify, promtool on a
live /metrics) uses ``RealServer`` from here rather than its own copy.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["REPO", "EXAMPLE_ROUTES", "START_TIMEOUT", "RealServer", "server_command", "config_data", "write_config",
           "render_toml", "http", "poll"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"
# A cold Numba cache compiles every kernel before /health turns 200; later starts load the cache.
START_TIMEOUT = 240.0
_LISTENING = re.compile(r"listening http=http://(\S+):(\d+) metrics=http://(\S+):(\d+)(\S*)")


def server_command():
    """The ``valkyrie-routing`` console script of this venv (or ``python -m valkyrie.cli``)."""
    exe = Path(sys.executable).with_name("valkyrie-routing")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "valkyrie.cli"]


def render_toml(sections):
    """TOML text for ``{"section.sub": {"key": value}}`` (``""`` is the top level); values as JSON literals."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in sections.get("", {}).items()]
    for name, values in sections.items():
        if name:
            lines += ["", f"[{name}]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def config_data(directory, lockfree=None, sections=None):
    """``{"section": {key: value}}`` of a config on ephemeral loopback ports with the example routes and a private store.

    ``lockfree`` adds ``[routing.lockfree]`` keys and ``sections`` merges more, key by key.
    """
    directory = Path(directory)
    data = {
        "server": {"host": "127.0.0.1", "port": 0},
        "routing": {"route_files": [str(EXAMPLE_ROUTES)], "store_path": str(directory / "routes.db")},
        "observability.metrics": {"host": "127.0.0.1", "port": 0},
    }
    if lockfree:
        data["routing.lockfree"] = dict(lockfree)
    for section, values in (sections or {}).items():
        data.setdefault(section, {}).update(values)
    return data


def write_config(directory, lockfree=None, extra="", sections=None, name="valkyrie.toml"):
    """Write ``config_data(...)`` (plus ``extra`` text, verbatim) to ``directory/name``; returns the path."""
    path = Path(directory) / name
    path.write_text(render_toml(config_data(directory, lockfree, sections)) + extra)
    return path


def http(method, url, body=None, timeout=10.0, headers=None):
    """(status, parsed JSON or raw bytes) for one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def poll(check, what, timeout=60.0, every=0.1):
    """Call ``check()`` until it returns something truthy (returned); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class RealServer:
    """A ``valkyrie-routing`` process on ephemeral loopback ports; ports come from its "listening" log line."""

    def __init__(self, config=None, env=None, args=()):
        self.cmd = [*server_command(), "--port", "0", "--metrics-port", "0", *args]
        if config is not None:
            self.cmd += ["--config", str(config)]
        self.env = dict(os.environ, **(env or {}))
        self.lines = []
        self.url = self.metrics_url = None
        self._listening = threading.Event()
        self.proc = None

    @property
    def pid(self):
        """Process id (unchanged by an exec, such as the jemalloc re-exec)."""
        return self.proc.pid

    def start(self):
        """Start the process and wait for its listening line."""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env, text=True, cwd=REPO)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not self._listening.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server never listened (exit {self.proc.poll()}):\n{self.log_tail()}")
        return self

    def _pump(self):
        # Drain stderr continuously so a chatty server never blocks on a full pipe.
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not self._listening.is_set():
                self.url = f"http://{m.group(1)}:{m.group(2)}"
                self.metrics_url = f"http://{m.group(3)}:{m.group(4)}{m.group(5)}"
                self._listening.set()

    def wait_ready(self, timeout=START_TIMEOUT):
        """Poll /health until 200; fail with the log tail if the server fails or dies."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = http("GET", self.url + "/health", timeout=2)
            except OSError:
                status, body = None, None
            if status == 200:
                return body
            if isinstance(body, dict) and body.get("status") == "failed":
                raise AssertionError(f"server failed to start: {body}\n{self.log_tail()}")
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def mark(self):
        """A position in the log; pass it to ``wait_for_line`` to look only at later lines."""
        return len(self.lines)

    def wait_for_line(self, pattern, since=0, timeout=60.0):
        """The first stderr line at or after ``since`` matching regex ``pattern``; fail with the log tail if none comes."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[since:]:
                if rx.search(line):
                    return line
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} (exit {self.proc.poll()}):\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n=30):
        """The last ``n`` log lines."""
        return "\n".join(self.lines[-n:])

    def stop(self, timeout=20):
        """SIGTERM and wait; SIGKILL if it hangs. Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
