"""``[server] max_connections``: connections past the cap are answered 503 and closed at once.

aiohttp has no connection cap of its own. Its ``Server`` hears of each new connection in
``connection_made``; past the cap the connection gets one JSON error and is closed before any
request on it is read, so a flood of idle keep-alive clients cannot run the process out of
file descriptors, and every admitted connection goes on being served.
"""

import orjson
from aiohttp import web

__all__ = ["CappedRunner", "refusal"]


def refusal(limit):
    """The raw HTTP answer a connection past the cap gets."""
    body = orjson.dumps({"error": {"code": "too_many_connections",
                                   "message": f"too many open connections; the limit is {limit} "
                                              f"([server] max_connections)"}})
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class CappedRunner(web.AppRunner):
    """An ``AppRunner`` admitting at most ``limit()`` open connections; ``limit`` is read per connection, so it can change live."""

    def __init__(self, app, *, limit, on_refused, **kwargs):
        super().__init__(app, **kwargs)
        self._cap = (limit, on_refused)

    async def _make_server(self):
        server = await super()._make_server()
        limit, on_refused = self._cap
        admitted = set()
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler, transport):
            cap = limit()
            if len(admitted) >= cap:
                transport.write(refusal(cap))
                transport.close()  # the handler then sees connection_lost and never reads a request
                on_refused()
                return
            admitted.add(handler)
            made(handler, transport)

        def connection_lost(handler, exc=None):
            admitted.discard(handler)
            lost(handler, exc)

        server.connection_made, server.connection_lost = connection_made, connection_lost
        return server
