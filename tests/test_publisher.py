"""The publisher: a job that fails, queued among update batches, fails alone."""

import asyncio
from concurrent.futures import ThreadPoolExecutor


from valkyrie.nodes import Node
from valkyrie.publisher import Publisher
from valkyrie.rcu import RcuDomain
from valkyrie.routes import parse_route
from valkyrie.writer import Batch, RouteWriter


def _put(key):
    return Batch(puts=[parse_route({"key": key, "next_hop": "a"})])


async def test_a_failing_job_fails_alone_and_the_batches_queued_with_it_apply():
    writer, rcu = RouteWriter(), RcuDomain()
    writer.stage(Batch(nodes=[Node("a")]))
    rcu.publish(writer.build())
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = Publisher(writer, rcu, executor, max_pending=1000)

        def out_of_memory(_writer, _current):
            raise MemoryError("could not allocate the new FIT")

        # All queued before the runner starts, so they form one group: batch, job, batch.
        calls = [asyncio.ensure_future(publisher.submit(_put("job-1"))),
                 asyncio.ensure_future(publisher.submit_job(out_of_memory)),
                 asyncio.ensure_future(publisher.submit(_put("job-2")))]
        await asyncio.sleep(0)
        runner = asyncio.ensure_future(publisher.run())
        try:
            first, failed, last = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            runner.cancel()
    assert isinstance(failed, MemoryError)
    assert isinstance(first, int) and isinstance(last, int) and last > first
    answers = rcu.current.resolve([b"job-1", b"job-2"])
    assert answers.match.tolist() == [1, 1]
