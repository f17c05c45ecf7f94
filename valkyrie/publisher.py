"""Coalesces update batches from many requests into snapshots and publishes them through RCU.

Requests ``await submit(batch)``; one task drains the queue, stages each batch
(a bad one fails alone), builds one snapshot for the group off the event loop
and publishes it. Every request is answered only after the snapshot holding
its changes is live, with that snapshot's epoch.
"""

import asyncio
import logging
import time

from valkyrie.routes import RouteError

__all__ = ["Publisher"]

log = logging.getLogger("valkyrie.publisher")


class Publisher:
    """The only path by which route changes reach readers."""

    def __init__(self, writer, rcu, executor, *, max_pending, on_publish=None):
        self.writer = writer
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
        """Stage every batch of ``group``, build and publish once; one outcome per batch."""
        outcomes, staged = [], False
        started = time.perf_counter()
        try:
            for item, _ in group:
                if callable(item):
                    outcomes.append(self._run_job(item) if not staged else self._flush_then(item))
                    staged = False
                    continue
                try:
                    self.writer.stage(item)
                    outcomes.append(None)
                    staged = True
                except RouteError as exc:
                    outcomes.append(exc)
            if staged:
                self._publish(self.writer.build(self.rcu.current))
        except Exception as exc:  # a bug, not bad input: fail the group loudly, keep the old snapshot
            log.exception("ERROR building snapshot; keeping epoch %s", self.rcu.current.epoch)
            return [exc] * len(group)
        self.last_build_seconds = time.perf_counter() - started
        epoch = self.rcu.current.epoch
        return [epoch if o is None else o for o in outcomes]

    def _flush_then(self, job):
        self._publish(self.writer.build(self.rcu.current))
        return self._run_job(job)

    def _run_job(self, job):
        snap = job(self.writer, self.rcu.current)
        self._publish(snap)
        return snap.epoch

    def _publish(self, snap):
        self.rcu.publish(snap)
        self.published += 1
        if self.on_publish is not None:
            self.on_publish(snap)


def _size(item):
    return 1 if callable(item) else max(1, item.size)
