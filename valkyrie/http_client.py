"""A small blocking HTTP client (stdlib only) for the CLI commands that talk to a running server."""

import urllib.error
import urllib.request

import orjson

__all__ = ["Http", "ServerUnreachable"]


class ServerUnreachable(OSError):
    """Nothing answered at the URL (refused, unresolvable, or no answer in time)."""


def _request(url, **kwargs):
    try:
        return urllib.request.Request(url, **kwargs)
    except ValueError as exc:
        raise ServerUnreachable(f"not a URL: {url!r} ({exc})") from None


class Http:
    """``request(method, url, body)`` -> ``(status, body bytes)``; the admin token goes only where asked."""

    def __init__(self, token=None, timeout=3.0):
        self.token, self.timeout = token, timeout

    def request(self, method, url, body=None, *, admin=False, content_type="application/json"):
        """Send one request; ``body`` may be bytes or a JSON-able object. Raises ``ServerUnreachable``."""
        data = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
        req = _request(url, data=data, method=method, headers={"Accept": "application/json, text/plain"})
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token and admin:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            raise self._unreachable(exc) from None

    def open(self, url, *, accept="application/json"):
        """GET ``url`` to read as it arrives: ``(status, file-like)``; the caller closes it. Raises ``ServerUnreachable``."""
        req = _request(url, method="GET", headers={"Accept": accept})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
            return resp.status, resp
        except urllib.error.HTTPError as exc:
            return exc.code, exc
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc):
        # URLError (refused, unresolvable, or a timeout inside), timeouts, and resets by whatever listens there.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return ServerUnreachable(f"no answer within {self.timeout:g}s")
        return ServerUnreachable(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    def get(self, url, *, admin=False):
        """``request("GET", url)``."""
        return self.request("GET", url, admin=admin)
