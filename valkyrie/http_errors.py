"""What the HTTP handlers share for bad input: the JSON-answered ``ApiError``, reading a request body safely, decoding it.

A body is read with the limits a client cannot dodge: a declared length over
``max_body_size`` is refused before reading (413), a body that stalls is cut off
after ``connection_timeout`` (408) instead of holding an in-flight slot forever,
and one that cannot be decoded (a bad ``Content-Encoding``) is a 400, not a 500.
"""

import asyncio

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

__all__ = ["ApiError", "read_body", "parse_json"]


class ApiError(Exception):
    """An error answered to the client as JSON."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_body(request, config):
    """The whole request body as bytes, or an ``ApiError`` naming what was wrong with it."""
    limit = config["server.max_body_size"]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large",
                       f"request body of {request.content_length} bytes is too large; the limit is {limit} bytes")
    timeout = config["server.connection_timeout"]
    try:
        return await asyncio.wait_for(request.read(), timeout=timeout or None)
    except asyncio.TimeoutError:
        raise ApiError(408, "request_timeout", f"request body not received within {timeout:g}s "
                                               "([server] connection_timeout)") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "payload_too_large", f"request body too large; the limit is {limit} bytes") from None
    except RequestPayloadError as exc:
        encoding = request.headers.get("Content-Encoding")
        how = f" with Content-Encoding {encoding!r}" if encoding else ""
        raise ApiError(400, "invalid_body", f"request body could not be decoded{how}: {exc.__cause__ or exc}") from None


def parse_json(raw, empty="request body is empty; send a JSON object"):
    """``raw`` decoded as JSON, or the 400 a client gets for an empty (``empty`` says what to send) or malformed body."""
    if not raw:
        raise ApiError(400, "invalid_body", empty)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc}") from None
