"""The HTTP peer for bench_http.py: pytricia longest-prefix tables behind the same aiohttp front end.

Loads the real table's IPv4 and IPv6 CSVs (bench/data/generated) into pytricia and answers
``GET /v1/route/{key}`` and ``POST /v1/route`` in Valkyrie's JSON shape (next hop and matched
prefix), so the comparison is the routing engine, not the web stack. Prints ``listening PORT``
once ready. Not a benchmark itself (run_all.py runs bench_*.py only).

    .venv/bin/python bench/peer_pytricia.py [--port 0]
"""

import argparse
import asyncio
import sys
from pathlib import Path

import orjson
import pytricia
from aiohttp import web

GENERATED = Path(__file__).resolve().parent / "data" / "generated"


def load(name, bits):
    """A pytricia trie of one generated CSV (prefix,next_hop)."""
    trie = pytricia.PyTricia(bits)
    with open(GENERATED / name) as fh:
        next(fh)
        for line in fh:
            prefix, hop = line.rstrip("\n").split(",", 1)
            trie[prefix] = hop
    return trie


def make_app(v4, v6):
    """GET one key and POST a JSON batch, answered like Valkyrie's API."""

    def answer(key):
        trie = v6 if ":" in key else v4
        try:
            prefix = trie.get_key(key)
        except ValueError:
            prefix = None
        if prefix is None:
            return {"key": key, "next_hop": None, "match": "none"}
        return {"key": key, "next_hop": trie[prefix], "match": "prefix", "prefix": prefix}

    async def get_route(request):
        body = answer(request.match_info["key"])
        return web.Response(body=orjson.dumps(body), status=200 if body["next_hop"] else 404,
                            content_type="application/json")

    async def post_route(request):
        keys = orjson.loads(await request.read())["keys"]
        return web.Response(body=orjson.dumps({"results": [answer(k) for k in keys]}), content_type="application/json")

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/v1/route/{key:.+}", get_route)
    app.router.add_post("/v1/route", post_route)
    return app


async def main(port):
    v4, v6 = load("ipv4.csv", 32), load("ipv6.csv", 128)
    runner = web.AppRunner(make_app(v4, v6), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"listening {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    try:
        asyncio.run(main(ap.parse_args().port))
    except KeyboardInterrupt:
        sys.exit(0)
