"""[server] max_connections on a real server: connections past the cap get one 503 and are closed; the rest are served."""

import json
import socket
import time

from tests.realserver import RealServer, http, poll, write_config

REQUEST = b"GET /v1/route/198.51.100.7 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _connect(url):
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _answer(sock):
    """One HTTP response from ``sock``: (status, parsed JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_connections_past_max_connections_are_refused_and_admitted_ones_served(tmp_path):
    config = write_config(tmp_path, sections={"server": {"max_connections": 2}, "routing": {"connection_pool_size": 2}})
    with RealServer(config) as srv:
        srv.wait_ready()
        # wait_ready's own connections close asynchronously: wait until a fresh pair is admitted.
        def two_admitted():
            held = [_connect(srv.url) for _ in range(2)]
            for s in held:
                s.sendall(REQUEST)
            ok = all(_answer(s)[0] == 200 for s in held)
            if not ok:
                for s in held:
                    s.close()
            return held if ok else None
        held = poll(two_admitted, "two keep-alive connections admitted", timeout=20)
        third = _connect(srv.url)
        third.sendall(REQUEST)
        status, body = _answer(third)
        assert status == 503 and body["error"]["code"] == "too_many_connections"
        assert "max_connections" in body["error"]["message"]
        try:
            assert third.recv(1) == b"", "a refused connection is closed"
        except ConnectionResetError:
            pass  # closed with our request unread, so the kernel resets it: closed all the same
        # The admitted ones go on being served on the same connections.
        for s in held:
            s.sendall(REQUEST)
            assert _answer(s)[0] == 200
        held[0].close()
        time.sleep(0.3)
        again = poll(lambda: _retry(srv.url), "a connection admitted once one closed", timeout=20)
        again.close()
        held[1].close()
        _, metrics = http("GET", srv.metrics_url)
        assert 'valkyrie_routing_errors_total{code="too_many_connections"}' in metrics.decode()


def _retry(url):
    sock = _connect(url)
    sock.sendall(REQUEST)
    status, _ = _answer(sock)
    if status == 200:
        return sock
    sock.close()
    return None
