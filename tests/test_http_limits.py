"""Request bodies a client cannot use against the server: stalls, lies about length, bad encodings, hang-ups."""

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from conftest import make_config, wait_ready
from valkyrie.server import STATE, create_app


async def _raw(port, head, body=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    return reader, writer


def _post_head(path, length, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


async def _status(reader, timeout=10):
    line = await asyncio.wait_for(reader.readline(), timeout)
    return int(line.split()[1])


async def test_stalled_bodies_time_out_and_health_stays_up():
    config = make_config(server={"connection_timeout": "1s"}, routing={"max_concurrent_requests": 2})
    async with TestClient(TestServer(create_app(config), host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        port = client.server.port
        stalled = [await _raw(port, _post_head("/v1/route", 30), b'{"') for _ in range(2)]
        await asyncio.sleep(0.2)
        # Both slots are held: lookups are refused, but /health still answers.
        assert (await client.get("/v1/route/198.51.100.7")).status == 503
        assert (await client.get("/health")).status == 200
        for reader, writer in stalled:
            assert await _status(reader) == 408
            writer.close()
        resp = await client.get("/v1/route/198.51.100.7")
        assert resp.status == 200


async def test_declared_length_over_the_limit_is_refused_before_reading(api):
    limit = api.app[STATE].config["server.max_body_size"]
    reader, writer = await _raw(api.server.port, _post_head("/v1/route", limit + 1))
    try:
        assert await _status(reader, timeout=5) == 413
    finally:
        writer.close()


async def test_a_body_that_cannot_be_decoded_is_a_400(api):
    resp = await api.post("/v1/route", data=b'{"keys": ["1.2.3.4"]}',
                          headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_body"
    assert "gzip" in body["error"]["message"]


async def test_a_client_hanging_up_is_not_a_server_error(api):
    st = api.app[STATE]
    for _ in range(3):
        reader, writer = await _raw(api.server.port, _post_head("/v1/route", 100), b'{"keys": [')
        await asyncio.sleep(0.05)
        writer.transport.abort()
    deadline = asyncio.get_running_loop().time() + 10
    while st.metrics.errors.get("client_closed", 0) < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert st.metrics.errors.get("client_closed", 0) == 3
    assert st.metrics.errors.get("internal_error", 0) == 0
    assert not [(e, s) for (e, s) in st.metrics.http_requests if e == "/v1/route" and s >= 500]
