"""Admin access on a real server process: with a token configured, every state-changing endpoint answers
401 without credentials and 403 with wrong ones and changes nothing; without a token the server will not
bind a non-loopback address; the metrics port serves nothing that changes state."""

import http.client as httpclient
import json
import os
import re
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.conftest import make_config
from tests.realserver import REPO, RealServer, http, server_command, write_config
from valkyrie.admin import TOKEN_ENV, is_loopback, load_admin_token
from valkyrie.server import create_app

TOKEN = "file-token-7f3a"
GOOD = {"Authorization": f"Bearer {TOKEN}"}

# A valid body for each endpoint that takes one: refusals are then about the token, never the body.
BODIES = {
    ("PUT", "/v1/routes"): {"nodes": [{"id": "node-z"}], "routes": [{"prefix": "192.0.2.0/24", "next_hop": "node-z"}]},
    ("DELETE", "/v1/routes"): {"routes": [{"key": "job-42"}]},
    ("PATCH", "/admin/tuning"): {"fit_load_factor": 0.6},
    ("POST", "/admin/cache/warmup"): {"keys": ["198.51.100.7"]},
}
LOOKUPS = ["198.51.100.7", "192.0.2.1", "job-42", "ci.build.linux"]
# Log lines that only appear when an admin action ran.
ACTION_LOG = re.compile(r"forced reclamation|heap profile written|hot\.reload|applied live|route files reloaded|warm")


# The only requests that need no token: reads, and the lookups that POST a batch of keys.
def is_public(method, path):
    return not path.startswith("/admin/") and (method == "GET" or (method, path) in {("POST", "/v1/route"),
                                                                                      ("POST", "/v1/route/packed")})


def protected_endpoints():
    """Every (method, path) the API app serves that is not public, read from the app's own router."""
    app = create_app(make_config())
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method not in ("HEAD", "OPTIONS") and not is_public(route.method, path):
            out.add((route.method, path))
    return sorted(out)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A ready server whose token comes from ``[server] admin_token_file``; VALKYRIE_ADMIN_TOKEN unset."""
    directory = tmp_path_factory.mktemp("admin")
    token_file = directory / "admin.token"
    token_file.write_text(TOKEN + "\n")
    config = write_config(directory, sections={
        "server": {"admin_token_file": str(token_file)},
        "performance.memory": {"heap_profile_path": str(directory / "heap.txt")},
    })
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    server = RealServer(config)
    server.env = env
    try:
        server.start()
        server.wait_ready()
        server.heap_file = directory / "heap.txt"
        yield server
    finally:
        server.stop()


def observable(server):
    """Everything an admin call could change, as seen from outside."""
    _, status = http("GET", server.url + "/config/status")
    _, health = http("GET", server.url + "/health")
    _, lookups = http("POST", server.url + "/v1/route", {"keys": LOOKUPS})
    _, tuning = http("GET", server.url + "/admin/tuning", headers=GOOD)
    with urllib.request.urlopen(server.metrics_url, timeout=10) as resp:
        metrics = resp.read().decode()
    counters = re.findall(r"^(valkyrie_(?:config_reloads|rcu_reclaimed_snapshots|route_updates)_total\S*) (\S+)$",
                          metrics, re.M)
    return {
        "status": {k: status[k] for k in ("values", "last_reload", "live_overrides", "epoch")},
        "health": (health["epoch"], health["routes"], health["nodes"]),
        "lookups": [(r["next_hop"], r["match"]) for r in lookups["results"]],
        "tuning": tuning,
        "counters": sorted(counters),
        "heap_profile": server.heap_file.exists(),
        "admin_log_lines": sum(bool(ACTION_LOG.search(line)) for line in server.lines),
    }


def call(base, method, path, headers=None, body=None):
    """(status, headers, parsed body) of one request with a raw (unnormalised) path."""
    url = urllib.parse.urlsplit(base)
    conn = httpclient.HTTPConnection(url.hostname, url.port, timeout=15)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, resp.headers, parsed
    finally:
        conn.close()


def test_the_endpoint_list_covers_updates_and_every_admin_action():
    endpoints = protected_endpoints()
    for expected in [("PUT", "/v1/routes"), ("DELETE", "/v1/routes"), ("POST", "/admin/reload"), ("POST", "/admin/gc"),
                     ("POST", "/admin/heap-dump"), ("GET", "/admin/tuning"), ("PATCH", "/admin/tuning"),
                     ("POST", "/admin/routes/reload")]:
        assert expected in endpoints


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Basic " + TOKEN}, 401, "unauthorized"),
    ({"Authorization": "Bearer"}, 401, "unauthorized"),
    ({"Authorization": "Bearer wrong-token"}, 403, "forbidden"),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403, "forbidden"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403, "forbidden"),
], ids=["none", "basic-scheme", "empty-bearer", "wrong", "longer", "prefix"])
def test_without_the_right_token_every_endpoint_refuses_and_nothing_changes(guarded, headers, status, code):
    before = observable(guarded)
    for method, path in protected_endpoints():
        got, resp_headers, body = call(guarded.url, method, path, headers, BODIES.get((method, path)))
        assert got == status, f"{method} {path} answered {got}: {body}"
        assert body["error"]["code"] == code, (method, path, body)
        assert "Authorization: Bearer" in body["error"]["message"] or "wrong" in body["error"]["message"]
        if status == 401:
            assert resp_headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
    assert observable(guarded) == before


@pytest.mark.parametrize("method, path", [
    ("POST", "//admin/reload"), ("POST", "/admin/reload/"), ("POST", "/ADMIN/reload"), ("POST", "/admin%2Freload"),
    ("POST", "/admin/./gc"), ("POST", "/admin/../admin/gc"), ("POST", "/x/../admin/heap-dump"),
    ("PUT", "/v1/routes/"), ("PUT", "//v1/routes"), ("PUT", "/v1/routes?table=default"), ("PUT", "/v1/%72outes"),
    ("DELETE", "/v1//routes"), ("PATCH", "/admin/tuning?"), ("POST", "/v1/routes"),
])
def test_path_spellings_do_not_get_around_the_token(guarded, method, path):
    before = observable(guarded)
    body = BODIES.get((method, path.split("?")[0])) or BODIES[("PUT", "/v1/routes")]
    status, _, answer = call(guarded.url, method, path, {}, body)
    assert status in (401, 403, 404, 405), f"{method} {path} answered {status}: {answer}"
    assert isinstance(answer, dict) and answer["error"]["code"]
    assert observable(guarded) == before


def test_metrics_port_serves_nothing_that_changes_state(guarded):
    before = observable(guarded)
    metrics = urllib.parse.urlsplit(guarded.metrics_url)
    base = f"http://{metrics.hostname}:{metrics.port}"
    for method, path in protected_endpoints() + [("POST", metrics.path), ("PUT", metrics.path), ("DELETE", metrics.path)]:
        for headers in ({}, GOOD):
            status, _, _ = call(base, method, path, headers, BODIES.get((method, path)))
            assert status in (404, 405), f"metrics port: {method} {path} answered {status}"
    assert call(base, "GET", metrics.path)[0] == 200
    assert observable(guarded) == before


def test_the_right_token_is_accepted(guarded):
    before = observable(guarded)
    status, _, body = call(guarded.url, "PUT", "/v1/routes", GOOD, BODIES[("PUT", "/v1/routes")])
    assert status == 200, body
    status, _, body = call(guarded.url, "POST", "/v1/route", {}, {"keys": ["192.0.2.1"]})
    assert body["results"][0]["next_hop"] == "node-z"
    status, _, body = call(guarded.url, "POST", "/admin/reload", GOOD)
    assert status == 200 and body["result"] == "ok", body
    after = observable(guarded)
    assert after["health"][0] > before["health"][0]
    assert after["status"]["last_reload"]["trigger"] == "POST /admin/reload"
    # Reads stay open: lookups, health and status need no token.
    assert http("GET", guarded.url + "/v1/route/198.51.100.7")[0] == 200
    assert after["status"]["values"]["server.admin_token_file"].endswith("admin.token")
    assert TOKEN not in str(after["status"])


# ---- start-up: where a token comes from, and what happens without one --------------------------


def run_server(config, *args, env_token=None):
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if env_token is not None:
        env[TOKEN_ENV] = env_token
    return subprocess.run([*server_command(), "--config", str(config), "--port", "0", "--metrics-port", "0", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.mark.parametrize("how", ["--host 0.0.0.0", "--host ::", "file host 192.0.2.10"])
def test_without_a_token_a_non_loopback_bind_is_refused_with_the_reason(tmp_path, how):
    if how.startswith("file"):
        config, args = write_config(tmp_path, sections={"server": {"host": how.split()[-1]}}), ()
    else:
        config, args = write_config(tmp_path), tuple(how.split())
    proc = run_server(config, *args)
    host = how.split()[-1]
    assert proc.returncode == 2, proc.stderr
    assert f"refusing to serve update and admin endpoints on {host} without an admin token" in proc.stderr
    assert TOKEN_ENV in proc.stderr and "admin_token_file" in proc.stderr and "127.0.0.1" in proc.stderr
    assert "listening" not in proc.stderr


@pytest.mark.parametrize("content, message", [(None, "cannot read admin token file"), ("  \n", "is empty")])
def test_a_bad_token_file_stops_start_up(tmp_path, content, message):
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    proc = run_server(write_config(tmp_path, sections={"server": {"admin_token_file": str(token_file)}}))
    assert proc.returncode == 2 and message in proc.stderr and str(token_file) in proc.stderr, proc.stderr


def test_the_environment_token_wins_over_the_file(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = make_config(server={"admin_token_file": str(token_file)})
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_admin_token(config) == "from-file"
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert load_admin_token(config) == "from-env"
    monkeypatch.setenv(TOKEN_ENV, "  ")
    assert load_admin_token(config) == "from-file"
    assert load_admin_token(make_config()) is None


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.0.2.10", False), ("example.com", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
