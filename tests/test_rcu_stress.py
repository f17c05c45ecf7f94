"""rcutorture for the router: readers check every answer belongs to one whole snapshot while it keeps changing.

A real server (in this process, on a loopback port) is fed a continuous stream
of generations over HTTP: generation ``g`` points every probe route (exact
keys, IPv4, IPv6 and name prefixes) and the default route at node ``gen-g`` in
one all-or-nothing PUT. Meanwhile tuning changes arrive (``fit_load_factor``,
``fit_capacity``, ``rcu_grace_period``, ``rcu_aggressive_reclaim``), each one a
rebuilt snapshot. Reader threads enter the server's own RCU domain and resolve
all probe keys in one critical section; every answer must name the same
generation, in the expected way (exact / prefix / default), from a snapshot
that is not released, and generations never go backwards. A released
snapshot's tables are None: reading one raises, and that is counted as a
use-after-release violation, not lost.
"""

import asyncio
import threading
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_config, wait_ready
from valkyrie.nodes import Node
from valkyrie.routes import parse_route
from valkyrie.server import STATE, create_app
from valkyrie.writer import Batch, RouteWriter

PROBES = 8
PROBE_ROUTES = ([{"key": f"probe-{i}"} for i in range(PROBES)]
                + [{"prefix": f"10.77.{i}.0/24"} for i in range(PROBES)]
                + [{"prefix": f"2001:db8:77:{i:x}::/64"} for i in range(PROBES)]
                + [{"prefix": f"svc{i}.probe."} for i in range(PROBES)])
PROBE_KEYS = ([f"probe-{i}" for i in range(PROBES)] + [f"10.77.{i}.5" for i in range(PROBES)]
              + [f"2001:db8:77:{i:x}::5" for i in range(PROBES)] + [f"svc{i}.probe.x" for i in range(PROBES)]
              + ["no-such-route"])
RAW_KEYS = [k.encode() for k in PROBE_KEYS]
EXPECTED_MATCH = ["exact"] * PROBES + ["prefix"] * (3 * PROBES) + ["default"]
MATCH_NAMES = ("none", "exact", "prefix", "default")

GENERATIONS = 1000  # bounded: the writer stops here or at the deadline, whichever comes first
DEADLINE_SECONDS = 25
FILLER_KEYS = 30000  # a FIT big enough that a rebuild takes a while
TUNING = [{"fit_load_factor": 0.5}, {"rcu_grace_period": "0ms"}, {"fit_capacity": 131072},
          {"rcu_aggressive_reclaim": True}, {"fit_load_factor": 0.9}, {"rcu_grace_period": "2ms"},
          {"fit_capacity": None, "fit_load_factor": 0.6}, {"rcu_aggressive_reclaim": False},
          {"rcu_grace_period": "1ms", "fit_load_factor": None}]


def generation_batch(g):
    """The PUT body of generation ``g``."""
    node = f"gen-{g}"
    return {"nodes": [{"id": node}], "routes": [{**r, "next_hop": node} for r in PROBE_ROUTES], "default_route": node}


def check(snap):
    """``(generation, None)`` for a whole snapshot, else ``(None, problem)``; call inside ``rcu.read()``."""
    try:
        if snap.released:
            return None, f"use-after-release: epoch {snap.epoch} was released before it was read"
        res = snap.resolve(RAW_KEYS)
        ids = snap.nodes.ids
        hops = [ids[n] if n >= 0 else None for n in res.node.tolist()]
        matches = [MATCH_NAMES[m] for m in res.match.tolist()]
        if snap.released:
            return None, f"use-after-release: epoch {snap.epoch} was released while being read"
    except Exception as exc:  # a released table is None: reading it raises; never let that pass silently
        kind = "use-after-release" if snap.released else "read error"
        return None, f"{kind}: epoch {snap.epoch}: {type(exc).__name__}: {exc}"
    if len(set(hops)) != 1 or not str(hops[0]).startswith("gen-"):
        return None, f"mixed snapshot: epoch {snap.epoch} answers {sorted(set(map(str, hops)))}"
    if matches != EXPECTED_MATCH:
        return None, f"wrong match kinds in epoch {snap.epoch}: {matches}"
    return int(hops[0][4:]), None


class Reader(threading.Thread):
    """Resolves the probe keys in one critical section, over and over, until stopped (bounded)."""

    def __init__(self, rcu, stop, limit=10**6):
        super().__init__(daemon=True)
        self.rcu, self.stop, self.limit = rcu, stop, limit
        self.reads, self.violations, self.seen = 0, [], {}

    def run(self):
        last = -1
        while not self.stop.is_set() and self.reads < self.limit:
            with self.rcu.read() as snap:
                gen, problem = check(snap)
                epoch = snap.epoch
            self.reads += 1
            if problem:
                self.violations.append(problem)
                continue
            if gen < last:
                self.violations.append(f"generation went backwards: {last} then {gen} (epoch {epoch})")
            last = gen
            if self.seen.setdefault(epoch, gen) != gen:
                self.violations.append(f"epoch {epoch} answered generation {self.seen[epoch]} and {gen}")
            # Let the writer and event loop threads in: this is a torture test, not a GIL hog.
            time.sleep(0)


# ---- the detector can fail ---------------------------------------------------------------------


def _snapshot(routes, default="gen-1"):
    writer = RouteWriter()
    writer.stage(Batch(nodes=[Node("gen-1"), Node("gen-2")], puts=[parse_route(r) for r in routes],
                       default_route=default))
    return writer.build()


def test_check_accepts_a_whole_snapshot():
    assert check(_snapshot([{**r, "next_hop": "gen-1"} for r in PROBE_ROUTES])) == (1, None)


def test_check_catches_a_mixed_snapshot():
    mixed = [{**r, "next_hop": "gen-2" if i == 5 else "gen-1"} for i, r in enumerate(PROBE_ROUTES)]
    gen, problem = check(_snapshot(mixed))
    assert gen is None and problem.startswith("mixed snapshot")


def test_check_catches_a_missing_route():
    gen, problem = check(_snapshot([{**r, "next_hop": "gen-1"} for r in PROBE_ROUTES[1:]]))
    assert gen is None and problem.startswith("wrong match kinds")


def test_check_catches_use_after_release():
    snap = _snapshot([{**r, "next_hop": "gen-1"} for r in PROBE_ROUTES])
    snap.resolve(RAW_KEYS)
    snap.release()
    gen, problem = check(snap)
    assert gen is None and problem.startswith("use-after-release")
    # And with the flag hidden, the read of None tables itself is what gets caught.
    object.__setattr__(snap, "released", False)
    gen, problem = check(snap)
    assert gen is None and problem.startswith("read error") and "NoneType" in problem


# ---- the torture run ---------------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path):
    filler = tmp_path / "filler.csv"
    filler.write_text("key,next_hop\n" + "".join(f"filler-{i},gen-0\n" for i in range(FILLER_KEYS)))
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,address\ngen-0,\n")
    app = create_app(make_config([str(nodes), str(filler)], routing__lockfree={"rcu_grace_period": "1ms"}))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        resp = await client.put("/v1/routes", json=generation_batch(1))
        assert resp.status == 200, await resp.text()
        yield client


async def test_readers_only_ever_see_whole_snapshots_under_updates_and_tuning(server):
    api, st = server, server.app[STATE]
    stop = threading.Event()
    readers = [Reader(st.rcu, stop) for _ in range(3)]
    for r in readers:
        r.start()
    written, tunings, failures = {}, [], []
    deadline = time.monotonic() + DEADLINE_SECONDS

    async def writer():
        for g in range(2, GENERATIONS + 2):
            if time.monotonic() > deadline:
                break
            resp = await api.put("/v1/routes", json=generation_batch(g))
            if resp.status != 200:
                failures.append(await resp.text())
                break
            written[(await resp.json())["epoch"]] = g

    async def tuner():
        i = 0
        while not writing.done() and i < 10 * len(TUNING):
            resp = await api.patch("/admin/tuning", json=TUNING[i % len(TUNING)])
            if resp.status != 200:
                failures.append(await resp.text())
                break
            tunings.append((await resp.json())["epoch"])
            i += 1
            await asyncio.sleep(0.02)

    writing = asyncio.ensure_future(writer())
    await asyncio.gather(writing, tuner())
    stop.set()
    for r in readers:
        r.join(30)
    violations = [v for r in readers for v in r.violations]
    reads = sum(r.reads for r in readers)
    seen = {}
    for r in readers:
        seen.update(r.seen)
    # What readers saw for an epoch a PUT published is exactly that PUT's generation.
    wrong = {e: (seen[e], g) for e, g in written.items() if e in seen and seen[e] != g}
    assert not failures, failures
    assert violations == [], f"{len(violations)} violations in {reads} reads, first: {violations[:5]}"
    assert wrong == {}, f"epochs answered another generation than written (seen, written): {wrong}"
    assert not any(r.is_alive() for r in readers)
    assert len(written) >= 20 and len(tunings) >= len(TUNING), (len(written), len(tunings))
    assert reads >= 100 and len(seen) >= 10, (reads, len(seen))
    # Old snapshots were reclaimed all along, and nothing is left once readers are gone.
    st.rcu.reclaim(force_grace=True)
    stats = st.rcu.stats()
    assert stats["pending_snapshots"] == 0 and stats["reclaimed_total"] == st.publisher.published
    print(f"rcutorture: {reads} reads by {len(readers)} threads over {len(seen)} epochs, {len(written)} generations, "
          f"{len(tunings)} tuning changes, {stats['reclaimed_total']} snapshots reclaimed, 0 violations")
