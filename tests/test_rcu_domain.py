"""RCU domain: publish, read, deferred reclamation that honours readers and the grace period."""

import threading
import time

import pytest

from valkyrie.rcu import RcuDomain


class Gen:
    """A snapshot stand-in: an epoch and a payload that release() destroys."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.payload = [epoch] * 8

    def release(self, live=()):
        self.payload = None
        return 64


def test_read_before_publish_says_what_to_call():
    with pytest.raises(RuntimeError, match="publish"):
        with RcuDomain().read():
            pass


def test_reader_in_old_epoch_blocks_reclaim_until_it_leaves():
    rcu = RcuDomain(grace_period=0)
    rcu.publish(Gen(1))
    inside, leave = threading.Event(), threading.Event()

    def reader():
        with rcu.read() as snap:
            inside.set()
            leave.wait(5)
            assert snap.payload is not None

    t = threading.Thread(target=reader)
    t.start()
    inside.wait(5)
    rcu.publish(Gen(2))
    assert rcu.reclaim().epochs == []
    assert rcu.stats()["pending_snapshots"] == 1 and rcu.stats()["active_readers"] == 1
    leave.set()
    t.join()
    assert rcu.reclaim().epochs == [1]
    assert rcu.stats()["reclaimed_bytes_total"] == 64


def test_grace_period_is_honoured():
    rcu = RcuDomain(grace_period=0.2)
    rcu.publish(Gen(1))
    rcu.publish(Gen(2))
    assert rcu.reclaim().epochs == []
    time.sleep(0.25)
    done = rcu.reclaim()
    assert done.epochs == [1] and done.waits[0] >= 0.2


def test_epochs_must_grow():
    rcu = RcuDomain()
    rcu.publish(Gen(3))
    with pytest.raises(RuntimeError, match="epoch must grow"):
        rcu.publish(Gen(3))


def test_readers_never_see_released_snapshots_under_churn():
    rcu = RcuDomain(grace_period=0)
    rcu.publish(Gen(1))
    stop = threading.Event()
    violations, reads = [], [0]

    def reader():
        while not stop.is_set():
            with rcu.read() as snap:
                if snap.payload is None or snap.payload[0] != snap.epoch:
                    violations.append(snap.epoch)
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for epoch in range(2, 3000):
        rcu.publish(Gen(epoch))
        rcu.reclaim()
    stop.set()
    for t in threads:
        t.join()
    rcu.reclaim()
    assert violations == [] and reads[0] > 0
    assert rcu.stats()["pending_snapshots"] == 0
