"""RCU reclamation: reader epochs and the grace period honoured, aggressive reclaim, stuck readers reported, metrics."""

import asyncio
import logging
import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_config, wait_ready
from tests.test_live_tuning import metric, patch, scrape
from tests.test_rcu_domain import Gen
from valkyrie.rcu import RcuDomain
from valkyrie.server import STATE, create_app


class HeldReader:
    """A real thread parked inside a read-side critical section until ``leave()``."""

    def __init__(self, rcu):
        self.inside, self._leave = threading.Event(), threading.Event()
        self.saw = None
        self.thread = threading.Thread(target=self._run, args=(rcu,), daemon=True)

    def _run(self, rcu):
        with rcu.read() as snap:
            self.saw = snap
            self.inside.set()
            self._leave.wait(30)
            self.intact = getattr(snap, "payload", True) is not None and not getattr(snap, "released", False)

    def __enter__(self):
        self.thread.start()
        assert self.inside.wait(10), "reader never entered"
        return self

    def leave(self):
        self._leave.set()
        self.thread.join(10)

    def __exit__(self, *exc):
        self.leave()


class Records(logging.Handler):
    """Collects the records of one logger (the server may stop propagation to the root)."""

    def __init__(self, name):
        super().__init__()
        self.records, self.logger = [], logging.getLogger(name)

    def __enter__(self):
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def emit(self, record):
        self.records.append(record)


# ---- the domain ------------------------------------------------------------------------------


def test_a_stuck_reader_holds_back_only_its_own_snapshot():
    rcu = RcuDomain(grace_period=0)
    rcu.publish(Gen(1))
    with HeldReader(rcu) as reader:
        for epoch in range(2, 11):
            rcu.publish(Gen(epoch))
        done = rcu.reclaim()
        assert done.epochs == list(range(2, 10))  # 10 is current; 1 is held
        assert rcu.stats()["pending_snapshots"] == 1 and reader.saw.payload is not None
        reader.leave()
        assert reader.intact
    assert rcu.reclaim().epochs == [1]
    assert rcu.stats()["pending_snapshots"] == 0


def test_aggressive_reclaim_releases_at_publish_without_waiting_out_the_grace_period():
    seen = []
    rcu = RcuDomain(grace_period=3600, aggressive=True, on_reclaimed=seen.append)
    rcu.publish(Gen(1))
    rcu.publish(Gen(2))
    assert rcu.stats()["pending_snapshots"] == 0 and [d.epochs for d in seen] == [[1]]
    with HeldReader(rcu):
        rcu.publish(Gen(3))
        # Even aggressively, a snapshot a reader is inside is kept.
        assert rcu.stats()["pending_snapshots"] == 1
    rcu.publish(Gen(4))
    assert rcu.stats()["pending_snapshots"] == 0 and seen[-1].epochs == [2, 3]


def test_without_aggressive_the_grace_period_keeps_the_snapshot():
    rcu = RcuDomain(grace_period=3600)
    rcu.publish(Gen(1))
    rcu.publish(Gen(2))
    assert rcu.reclaim().epochs == [] and rcu.stats()["pending_snapshots"] == 1
    assert rcu.reclaim(force_grace=True).epochs == [1]


def test_a_stalled_reader_is_reported_once_and_its_leaving_noted():
    rcu = RcuDomain(grace_period=0, stall_after=0.0)
    rcu.publish(Gen(1))
    with Records("valkyrie.rcu") as log, HeldReader(rcu) as reader:
        rcu.publish(Gen(2))
        assert rcu.report_stalls() == 1 and rcu.report_stalls() == 1
        warns = [r for r in log.records if r.levelno == logging.WARNING]
        assert len(warns) == 1 and "stalled" in warns[0].getMessage() and "epoch 1" in warns[0].getMessage()
        stats = rcu.stats()
        assert stats["stalled_readers"] == 1 and stats["stalls_total"] == 1 and stats["oldest_reader_seconds"] > 0
        reader.leave()
        assert rcu.report_stalls() == 0
        assert any("left its stalled" in r.getMessage() for r in log.records)
    assert rcu.stats()["stalls_total"] == 1


# ---- in a real server ------------------------------------------------------------------------


async def until(predicate, what, tries=400):
    """Poll an async predicate (bounded); fail naming what never happened."""
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def put(api, key):
    resp = await api.put("/v1/routes", json={"routes": [{"key": key, "next_hop": "node-a"}]})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["epoch"]


@pytest.fixture
async def slow_grace():
    """A server whose grace period (60s) keeps every retired snapshot until something forces it."""
    app = create_app(make_config(routing__lockfree={"rcu_grace_period": "60s"}))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        yield client


async def test_aggressive_reclaim_over_http_empties_pending_at_publish(slow_grace):
    api = slow_grace
    await put(api, "g-1")
    text = await scrape(api)
    assert metric(text, "valkyrie_rcu_pending_snapshots") >= 1
    reclaimed = metric(text, "valkyrie_rcu_reclaimed_bytes_total")
    await patch(api, {"rcu_aggressive_reclaim": True})
    await put(api, "g-2")
    text = await scrape(api)
    assert metric(text, "valkyrie_rcu_pending_snapshots") == 0
    assert metric(text, "valkyrie_rcu_reclaimed_bytes_total") > reclaimed
    assert metric(text, "valkyrie_rcu_grace_period_seconds_count") >= 2


async def test_forced_reclaim_is_measured_too(slow_grace):
    api = slow_grace
    await put(api, "f-1")
    before = metric(await scrape(api), "valkyrie_rcu_grace_period_seconds_count")
    body = await (await api.post("/admin/gc")).json()
    assert body["reclaimed_snapshots"] >= 1
    assert metric(await scrape(api), "valkyrie_rcu_grace_period_seconds_count") == before + body["reclaimed_snapshots"]


async def test_grace_histogram_holds_actual_waits_of_at_least_the_grace_period():
    app = create_app(make_config(routing__lockfree={"rcu_grace_period": "30ms"}))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as api:
        await wait_ready(api)
        for i in range(3):
            await put(api, f"h-{i}")

        async def all_reclaimed():
            return metric(await scrape(api), "valkyrie_rcu_pending_snapshots") == 0

        await until(all_reclaimed, "every retired snapshot reclaimed")
        text = await scrape(api)
        count = metric(text, "valkyrie_rcu_grace_period_seconds_count")
        assert count >= 3
        assert metric(text, "valkyrie_rcu_grace_period_seconds_bucket", 'le="0.025"') == 0  # none cut short


async def test_stuck_reader_in_a_server_is_reported_and_holds_one_snapshot(api):
    st = api.app[STATE]
    st.rcu.stall_after = 0.05
    with Records("valkyrie.rcu") as log, HeldReader(st.rcu) as reader:
        for i in range(4):
            await put(api, f"s-{i}")

        async def reported():
            text = await scrape(api)
            return (metric(text, "valkyrie_rcu_stalled_readers") == 1 and metric(text, "valkyrie_rcu_pending_snapshots") == 1)

        await until(reported, "stall reported and all but the held snapshot reclaimed")
        text = await scrape(api)
        assert metric(text, "valkyrie_rcu_reader_stalls_total") == 1
        assert metric(text, "valkyrie_rcu_oldest_reader_seconds") >= 0.05
        assert metric(text, "valkyrie_rcu_grace_wait_seconds") > 0
        assert any(r.levelno == logging.WARNING and f"epoch {reader.saw.epoch}" in r.getMessage() for r in log.records)
        # Lookups keep flowing on the newest snapshot meanwhile.
        assert (await (await api.get("/v1/route/s-3")).json())["match"] == "exact"
        reader.leave()
        assert reader.intact

        async def released():
            text = await scrape(api)
            return metric(text, "valkyrie_rcu_stalled_readers") == 0 and metric(text, "valkyrie_rcu_pending_snapshots") == 0

        await until(released, "the held snapshot reclaimed once its reader left")


def _writer_snapshots():
    from valkyrie.nodes import Node
    from valkyrie.routes import parse_route
    from valkyrie.writer import Batch, RouteWriter
    writer = RouteWriter()
    writer.stage(Batch(nodes=[Node("a"), Node("b")],
                       puts=[parse_route({"prefix": f"10.{i}.0.0/16", "next_hop": "a"}) for i in range(200)]
                       + [parse_route({"key": f"job-{i}", "next_hop": "a"}) for i in range(200)]))
    first = writer.build()
    writer.stage(Batch(puts=[parse_route({"prefix": "10.7.0.0/16", "next_hop": "b"})]))
    return first, writer.build(first)


def test_reclaimed_bytes_count_only_memory_the_live_snapshot_does_not_share():
    first, second = _writer_snapshots()
    mine = {k: n for k, n in first.buffers().items() if k not in second.buffers()}
    # The prefix change shares the FIT, the IPv6 and name tables and the IPv4 arena with its successor.
    assert second.exact is first.exact and 0 < sum(mine.values()) < first.nbytes() / 2
    rcu = RcuDomain(grace_period=0)
    rcu.publish(first)
    rcu.publish(second)
    done = rcu.reclaim()
    assert done.epochs == [first.epoch] and done.nbytes == sum(mine.values())
    assert rcu.stats()["reclaimed_bytes_total"] == sum(mine.values())


def test_memory_two_reclaimed_snapshots_share_is_counted_once():
    first, second = _writer_snapshots()
    everything = {**first.buffers(), **second.buffers()}
    # Released in one pass, oldest first (as reclaim() does): the first leaves shared memory to the
    # second, which then frees it; between them every byte is counted once.
    assert first.release([second]) + second.release([]) == sum(everything.values())
