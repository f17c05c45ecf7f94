"""A small blocking HTTP client (stdlib only) for the CLI commands that talk to a running server."""

import socket
import urllib.error
import urllib.request

import orjson

__all__ = ["Http", "ServerUnreachable"]


class ServerUnreachable(OSError):
    """Nothing answered at the URL (refused, unresolvable, or no answer in time)."""


class Http:
    """``request(method, url, body)`` -> ``(status, body bytes)``; the admin token goes only where asked."""

    def __init__(self, token=None, timeout=3.0):
        self.token, self.timeout = token, timeout

    def request(self, method, url, body=None, *, admin=False, content_type="application/json"):
        """Send one request; ``body`` may be bytes or a JSON-able object. Raises ``ServerUnreachable``."""
        data = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Accept": "application/json, text/plain"})
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token and admin:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise ServerUnreachable(getattr(reason, "strerror", None) or str(reason)) from None
        except (socket.timeout, TimeoutError):
            raise ServerUnreachable(f"no answer within {self.timeout:g}s") from None

    def open(self, url, *, accept="application/json"):
        """GET ``url`` to read as it arrives: ``(status, file-like)``; the caller closes it. Raises ``ServerUnreachable``."""
        req = urllib.request.Request(url, method="GET", headers={"Accept": accept})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
            return resp.status, resp
        except urllib.error.HTTPError as exc:
            return exc.code, exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise ServerUnreachable(getattr(reason, "strerror", None) or str(reason)) from None
        except (socket.timeout, TimeoutError):
            raise ServerUnreachable(f"no answer within {self.timeout:g}s") from None

    def get(self, url, *, admin=False):
        """``request("GET", url)``."""
        return self.request("GET", url, admin=admin)
