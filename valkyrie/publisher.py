"""Coalesces update batches from many requests into snapshots and publishes them through RCU.

Requests ``await submit(batch)``; one task drains the queue, stages each batch
(a bad one fails alone, as does a job that raises), builds one snapshot for the group off the event loop
and publishes it. Every request is answered only after the snapshot holding
its changes is live, with that snapshot's epoch.
"""

import asyncio
import logging
import time

from valkyrie.routes import RouteError
from valkyrie.store import StoreError

__all__ = ["Publisher"]

log = logging.getLogger("valkyrie.publisher")


class Publisher:
    """The only path by which route changes reach readers."""

    def __init__(self, writer, rcu, executor, *, max_pending, store=None, on_publish=None):
        self.writer = writer
        self.store = store
        self.rcu = rcu
        self.executor = executor
        self.max_pending = max_pending
        self.on_publish = on_publish
        self._queue = asyncio.Queue()
        self.published = 0
        self.last_build_seconds = 0.0

    @property
    def queue_depth(self):
        """Batches waiting to be staged."""
        return self._queue.qsize()

    async def submit(self, batch):
        """Queue ``batch``; return the epoch that made it live, or raise ``RouteError``."""
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, fut))
        return await fut

    async def submit_job(self, fn):
        """Run ``fn(writer, current_snapshot) -> snapshot`` in the writer's turn and publish it."""
        return await self.submit(fn)

    async def run(self):
        """Drain the queue forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            changes = _size(group[0][0])
            while not self._queue.empty() and changes < self.max_pending:
                item = self._queue.get_nowait()
                group.append(item)
                changes += _size(item[0])
            outcomes = await loop.run_in_executor(self.executor, self._apply, group)
            for (_, fut), outcome in zip(group, outcomes):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    def _apply(self, group):
        """Stage, persist, build and publish ``group``; one outcome (epoch or exception) per item.

        Consecutive batches form a segment: staged one by one (a bad batch
        fails alone), written to the store in one transaction, then built
        into one snapshot. A job (a callable) first flushes the segment
        before it, then runs on the live snapshot in the writer's turn.
        """
        outcomes = [None] * len(group)
        segment = []
        started = time.perf_counter()
        try:
            for i, (item, _) in enumerate(group):
                if callable(item):
                    self._flush(segment, outcomes)
                    segment = []
                    try:
                        snap = item(self.writer, self.rcu.current)
                    except Exception as exc:  # noqa: BLE001 - the job's caller gets it; batches queued with it go on
                        # A job builds from the live snapshot and changes the writer only once it has built
                        # (rebuild_fit, defragment; a reload restores it): one that fails leaves nothing half done.
                        if not isinstance(exc, (RouteError, StoreError)):
                            log.error("ERROR snapshot job failed, keeping epoch %s: %s: %s", self.rcu.current.epoch,
                                      type(exc).__name__, exc)
                        outcomes[i] = exc
                        continue
                    self._publish(snap)
                    outcomes[i] = snap.epoch
                    continue
                if not segment:
                    self.writer.begin()
                try:
                    self.writer.stage(item)
                    segment.append(i)
                except RouteError as exc:
                    outcomes[i] = exc
            self._flush(segment, outcomes)
        except Exception as exc:  # a bug, not bad input: fail the rest loudly, keep the old snapshot
            log.exception("ERROR building snapshot; keeping epoch %s", self.rcu.current.epoch)
            return [o if o is not None else exc for o in outcomes]
        self.last_build_seconds = time.perf_counter() - started
        return outcomes

    def _flush(self, segment, outcomes):
        if not segment:
            self.writer.end()
            return
        if self.store is not None:
            try:
                self.store.write(*self.writer.records())
            except StoreError as exc:
                self.writer.rollback()
                log.error("ERROR route store refused %d batch(es), nothing applied: %s", len(segment), exc)
                for i in segment:
                    outcomes[i] = exc
                return
        self.writer.end()
        snap = self.writer.build(self.rcu.current)
        self._publish(snap)
        for i in segment:
            outcomes[i] = snap.epoch

    def _publish(self, snap):
        self.rcu.publish(snap)
        self.published += 1
        if self.on_publish is not None:
            self.on_publish(snap)


def _size(item):
    return 1 if callable(item) else max(1, item.size)
