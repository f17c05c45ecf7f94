"""Acknowledged route updates survive restarts and kill -9, on real server processes with real stores.

Also the start-up order (route files, then the store, then the first snapshot,
with /health 503 until then) and the precedence of API changes over route
files, across restarts and ``POST /admin/routes/reload``.
"""

import os
import random
from http.client import HTTPException
import signal
import threading
import time

from tests.realserver import RealServer, http, poll, render_toml

FILE_ROUTES = """
[[nodes]]
id = "n1"
address = "127.0.0.1:7001"

[[nodes]]
id = "n2"
address = "127.0.0.1:7002"

[[nodes]]
id = "n3"
address = "127.0.0.1:7003"
{routes}
"""


def _route_file(path, routes):
    body = "".join(f'\n[[routes]]\n{"key" if "/" not in r else "prefix"} = "{r}"\nnext_hop = "{hop}"\n'
                   for r, hop in routes.items())
    path.write_text(FILE_ROUTES.format(routes=body))
    return path


def _config(tmp_path, route_files, **routing):
    path = tmp_path / "valkyrie.toml"
    path.write_text(render_toml({
        "server": {"host": "127.0.0.1", "port": 0},
        "routing": {"route_files": [str(f) for f in route_files], "store_path": str(tmp_path / "routes.db"), **routing},
        "observability.metrics": {"host": "127.0.0.1", "port": 0},
    }))
    return path


def _ok(status_body, what="request"):
    status, body = status_body
    assert 200 <= status < 300, f"{what}: {status} {body}"
    return body


def _answers(server, keys):
    """``{key: (next_hop, match)}`` from one batch lookup."""
    out = {}
    for i in range(0, len(keys), 20000):
        chunk = keys[i:i + 20000]
        body = _ok(http("POST", server.url + "/v1/route", {"keys": chunk}, timeout=60), "lookup")
        out.update((r["key"], (r["next_hop"], r["match"])) for r in body["results"])
    return out


def _exported(server):
    body = _ok(http("GET", server.url + "/v1/routes", timeout=60), "export")
    return {next(v for k, v in r.items() if k != "next_hop"): r["next_hop"] for r in body["routes"]}, body


# ---- start-up order and precedence -----------------------------------------------------------


def test_startup_reads_files_then_replays_the_store_then_publishes_once(tmp_path):
    routes = tmp_path / "routes.toml"
    _route_file(routes, {"10.1.0.0/16": "n1", "10.2.0.0/16": "n1", "10.3.0.0/16": "n1"})
    with RealServer(_config(tmp_path, [routes])) as server:
        server.wait_ready()
        _ok(http("PUT", server.url + "/v1/routes", {"routes": [{"prefix": "10.1.0.0/16", "next_hop": "n2"},
                                                               {"prefix": "10.4.0.0/16", "next_hop": "n2"}]}))
        _ok(http("DELETE", server.url + "/v1/routes", {"routes": [{"prefix": "10.2.0.0/16"}]}))

    # Second start: the route file is a FIFO, so the server's read blocks until the test writes it.
    fifo = tmp_path / "routes-fifo.toml"
    os.mkfifo(fifo)
    with RealServer(_config(tmp_path, [fifo])) as server:
        for _ in range(3):
            status, body = http("GET", server.url + "/health")
            assert status == 503 and body["status"] == "starting", body
        for method, path, body in (("GET", "/v1/route/10.1.2.3", None), ("GET", "/v1/routes", None),
                                   ("PUT", "/v1/routes", {"routes": [{"prefix": "10.9.0.0/16", "next_hop": "n1"}]})):
            status, answer = http(method, server.url + path, body)
            assert status == 503 and answer["error"]["code"] == "not_ready", (method, path, answer)
        writer = threading.Thread(target=_route_file, args=(fifo, {"10.1.0.0/16": "n1", "10.2.0.0/16": "n1",
                                                                   "10.3.0.0/16": "n3"}))
        writer.start()
        health = server.wait_ready()
        writer.join(10)
        # One snapshot holds files and store together: no epoch ever served the files alone.
        assert health["epoch"] == 1, health
        got = _answers(server, ["10.1.0.1", "10.2.0.1", "10.3.0.1", "10.4.0.1"])
        assert got == {"10.1.0.1": ("n2", "prefix"), "10.2.0.1": (None, "none"),
                       "10.3.0.1": ("n3", "prefix"), "10.4.0.1": ("n2", "prefix")}


def test_api_changes_win_over_route_files_across_reload_and_restart(tmp_path):
    routes = tmp_path / "routes.toml"
    _route_file(routes, {"10.1.0.0/16": "n1", "10.2.0.0/16": "n1", "10.3.0.0/16": "n1", "10.5.0.0/16": "n1",
                         "job-1": "n1"})
    config = _config(tmp_path, [routes])
    keys = ["10.1.0.1", "10.2.0.1", "10.3.0.1", "10.4.0.1", "10.5.0.1", "10.6.0.1", "job-1", "job-2"]
    with RealServer(config) as server:
        server.wait_ready()
        _ok(http("PUT", server.url + "/v1/routes", {
            "nodes": [{"id": "n3", "address": "10.9.9.9:9"}],
            "routes": [{"prefix": "10.1.0.0/16", "next_hop": "n2"}, {"prefix": "10.4.0.0/16", "next_hop": "n2"},
                       {"key": "job-2", "next_hop": "n2"}]}))
        _ok(http("DELETE", server.url + "/v1/routes", {"routes": [{"prefix": "10.2.0.0/16"}, {"key": "job-1"}]}))

        # The file changes every route it had, drops one and adds one; a reload re-reads it.
        _route_file(routes, {"10.1.0.0/16": "n3", "10.2.0.0/16": "n3", "10.3.0.0/16": "n3", "10.6.0.0/16": "n3",
                             "job-1": "n3"})
        _ok(http("POST", server.url + "/admin/routes/reload"), "reload")
        expected = {
            "10.1.0.1": ("n2", "prefix"),  # API put wins over the file's new value
            "10.2.0.1": (None, "none"),  # API delete of a file route sticks, though the file re-declares it
            "10.3.0.1": ("n3", "prefix"),  # untouched by the API: follows the file
            "10.4.0.1": ("n2", "prefix"),  # API-only route is kept
            "10.5.0.1": (None, "none"),  # gone from the file, never touched by the API: gone
            "10.6.0.1": ("n3", "prefix"),  # new in the file
            "job-1": (None, "none"),
            "job-2": ("n2", "exact"),
        }
        assert _answers(server, keys) == expected
        nodes = {n["id"]: n for n in _exported(server)[1]["nodes"]}
        assert nodes["n3"]["address"] == "10.9.9.9:9"  # the API's node replaces the file's
        # Putting a deleted file route back through the API revives it.
        _ok(http("PUT", server.url + "/v1/routes", {"routes": [{"prefix": "10.2.0.0/16", "next_hop": "n1"}]}))
        expected["10.2.0.1"] = ("n1", "prefix")
        before_restart = _exported(server)[0]
    with RealServer(config) as server:
        server.wait_ready()
        assert _answers(server, keys) == expected
        assert _exported(server)[0] == before_restart


def test_reload_with_a_bad_route_file_keeps_serving_the_previous_table(tmp_path):
    routes = tmp_path / "routes.toml"
    _route_file(routes, {"10.1.0.0/16": "n1"})
    with RealServer(_config(tmp_path, [routes])) as server:
        server.wait_ready()
        _ok(http("PUT", server.url + "/v1/routes", {"routes": [{"key": "api-1", "next_hop": "n2"}]}))
        routes.write_text('[[routes]]\nprefix = "10.1.0.0/16"\nnext_hop = "ghost"\n')
        status, body = http("POST", server.url + "/admin/routes/reload")
        assert status == 422 and "ghost" in body["error"]["message"], body
        assert _answers(server, ["10.1.0.1", "api-1"]) == {"10.1.0.1": ("n1", "prefix"), "api-1": ("n2", "exact")}


# ---- restarts ----------------------------------------------------------------------------------


def _mixed_updates(n_routes, batch, rng):
    """Batches of PUTs over IPv4, IPv6, names and exact keys, then overwrites and deletions; and the final model."""
    routes = []
    for i in range(n_routes):
        kind = i % 4
        if kind == 0:
            routes.append(("prefix", f"11.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32", f"11.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))
        elif kind == 1:
            routes.append(("prefix", f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64", f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::7"))
        elif kind == 2:
            routes.append(("prefix", f"svc.{i}.", f"svc.{i}.query"))
        else:
            routes.append(("key", f"job-{i}", f"job-{i}"))
    hops = ["n1", "n2", "n3"]
    model, ops = {}, []
    for kind, text, probe in routes:
        hop = rng.choice(hops)
        ops.append(("PUT", {kind: text, "next_hop": hop}))
        model[probe] = hop
    for kind, text, probe in rng.sample(routes, n_routes // 10):
        hop = rng.choice(hops)
        ops.append(("PUT", {kind: text, "next_hop": hop}))
        model[probe] = hop
    for kind, text, probe in rng.sample(routes, n_routes // 20):
        ops.append(("DELETE", {kind: text}))
        model[probe] = None
    batches = []
    for i in range(0, len(ops), batch):
        chunk = ops[i:i + batch]
        # A batch is one method; split a mixed chunk in two.
        for method in ("PUT", "DELETE"):
            part = [entry for m, entry in chunk if m == method]
            if part:
                batches.append((method, {"routes": part}))
    return batches, model


def test_100k_updates_survive_a_restart_with_the_same_answers(tmp_path):
    routes = _route_file(tmp_path / "routes.toml", {})
    config = _config(tmp_path, [routes])
    batches, model = _mixed_updates(100_000, 1000, random.Random(6))
    assert sum(len(b["routes"]) for _, b in batches) >= 100_000
    keys = sorted(model)
    with RealServer(config) as server:
        server.wait_ready()
        started = time.monotonic()
        for method, body in batches:
            _ok(http(method, server.url + "/v1/routes", body, timeout=60), f"{method} batch")
        print(f"\n{len(batches)} batches in {time.monotonic() - started:.1f}s")
        before = _answers(server, keys)
    deleted = [k for k, hop in model.items() if hop is None]
    assert deleted and all(before[k] == (None, "none") for k in deleted)
    assert {k: hop for k, (hop, _) in before.items()} == model
    with RealServer(config) as server:
        server.wait_ready()
        assert _answers(server, keys) == before


# ---- kill -9 in the middle of a stream of batches ----------------------------------------------


class BatchStream:
    """Client threads sending numbered PUT batches until the server dies; records which were acknowledged."""

    def __init__(self, url, first_batch, per_batch=20, threads=4):
        self.url, self.per_batch = url, per_batch
        self.next_batch, self.lock = first_batch, threading.Lock()
        self.acked, self.sent = set(), set()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def routes(self, b):
        """The routes of batch ``b``: half exact keys, half IPv4 host routes, all to one next hop."""
        half = self.per_batch // 2
        return ([{"key": f"crash-{b}-{i}", "next_hop": f"n{1 + b % 3}"} for i in range(half)]
                + [{"prefix": f"12.{b >> 8 & 255}.{b & 255}.{i}/32", "next_hop": f"n{1 + b % 3}"} for i in range(half)])

    def probes(self, b):
        """One lookup key per route of batch ``b``."""
        half = self.per_batch // 2
        return [f"crash-{b}-{i}" for i in range(half)] + [f"12.{b >> 8 & 255}.{b & 255}.{i}" for i in range(half)]

    def _run(self):
        for _ in range(100_000):  # bounded; the server's death ends it long before
            with self.lock:
                b = self.next_batch
                self.next_batch += 1
                self.sent.add(b)
            try:
                status, _ = http("PUT", self.url + "/v1/routes", {"routes": self.routes(b)}, timeout=10)
            except (OSError, HTTPException):
                return
            if status == 200:
                with self.lock:
                    self.acked.add(b)

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "client threads did not stop after the kill"


def test_kill_9_mid_stream_keeps_every_acknowledged_batch_and_no_half_batch(tmp_path):
    routes = _route_file(tmp_path / "routes.toml", {})
    config = _config(tmp_path, [routes])
    acked, sent, next_batch = set(), set(), 0
    stream = None
    for cycle in range(3):
        with RealServer(config) as server:
            server.wait_ready()
            if stream is not None:
                _check_batches(server, stream, acked, sent)
            stream = BatchStream(server.url, next_batch)
            stream.start()
            target = 40 + 25 * cycle
            poll(lambda: len(stream.acked) >= target, f"{target} acknowledged batches", timeout=120, every=0.01)
            os.kill(server.pid, signal.SIGKILL)
            assert server.proc.wait(20) == -signal.SIGKILL
            stream.join()
            acked |= stream.acked
            sent |= stream.sent
            next_batch = stream.next_batch
    with RealServer(config) as server:
        server.wait_ready()
        _check_batches(server, stream, acked, sent)


def _check_batches(server, stream, acked, sent):
    batches = sorted(sent)
    keys = [k for b in batches for k in stream.probes(b)]
    got = _answers(server, keys)
    half_applied, lost, unacked_present = [], [], 0
    for b in batches:
        hops = [got[k][0] for k in stream.probes(b)]
        present = sum(h == f"n{1 + b % 3}" for h in hops)
        if 0 < present < stream.per_batch:
            half_applied.append((b, present))
        if b in acked and present != stream.per_batch:
            lost.append(b)
        if b not in acked and present:
            unacked_present += 1  # committed, then killed before the answer went out: allowed
    assert not half_applied, f"batches partly applied: {half_applied[:10]}"
    assert not lost, f"acknowledged batches missing after kill -9: {lost[:10]}"
    assert len(acked) >= 40
    print(f"\n{len(acked)} acknowledged, {len(sent) - len(acked)} unacknowledged "
          f"({unacked_present} of them committed before the kill)")
