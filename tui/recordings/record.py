"""Record what the console polls from a real server under load, for deterministic snapshot tests.

    .venv/bin/python tui/recordings/record.py [--polls 40] [--out tui/recordings/session.jsonl]

Starts a server on the example table, drives lookups at changing rates (so the
charts have shape), sets one live override and reloads the config part way, and
writes one JSON line per poll: health, the console's metric series, config status
and tuning. Paths that name this machine's temp dirs are replaced by the guide's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tui.serve import ServedServer  # noqa: E402

EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"
SHOWN_PATH = "/app/config/production.toml"
KEEP = ("valkyrie_routing_request_duration_window_seconds", "valkyrie_routing_requests_total",
        "valkyrie_routing_errors_total", "valkyrie_http_requests_total", "valkyrie_fit_", "valkyrie_cra_",
        "valkyrie_rcu_", "valkyrie_table_bytes", "process_resident_memory_bytes")
KEYS = ["198.51.100.7", "203.0.113.9", "2001:db8::1", "ci.build.linux.x86", "job-42", "192.0.2.1"]


def keep_series(text: str) -> str:
    """Only the series the console reads (and their TYPE lines); no HELP, ``_created`` or ``_bucket`` lines."""
    out = []
    for line in text.splitlines():
        if line.startswith("# HELP"):
            continue
        name = line.split()[2] if line.startswith("# ") and len(line.split()) > 2 else line.split("{")[0].split(" ")[0]
        if name.startswith(KEEP) and not name.endswith(("_created", "_bucket")):
            out.append(line)
    return "\n".join(out) + "\n"


async def load(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, level: list[int]) -> None:
    """Packed batches whose size follows ``level[0]`` (0 = idle), plus a few lookups that miss."""
    i = 0
    while not stop.is_set():
        size = level[0]
        if not size:
            await asyncio.sleep(0.05)
            continue
        body = "\n".join(KEYS[(i + k) % len(KEYS)] for k in range(size)).encode()
        async with session.post(f"{url}/v1/route/packed", data=body) as r:
            await r.read()
        if i % 20 == 0:
            async with session.get(f"{url}/v1/route/no.such.key") as r:
                await r.read()
        i += 1


async def record(polls: int, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="valkyrie-record-") as tmp:
        config = Path(tmp) / "production.toml"
        config.write_text(f'[server]\nhost = "127.0.0.1"\n\n[routing]\nstore_path = ""\n'
                          f'route_files = ["{EXAMPLE_ROUTES}"]\n\n[logging]\nlevel = "warning"\n')
        with ServedServer(config) as srv:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    try:
                        async with session.get(f"{srv.url}/health") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
                stop, level = asyncio.Event(), [0]
                task = asyncio.create_task(load(session, srv.url, stop, level))
                lines = []
                t0 = time.monotonic()
                for n in range(polls):
                    # Idle, then rising load, a dip, and steady load: shapes for the charts.
                    level[0] = 0 if n < 3 else (200 if n < 8 else (2000 if n < 20 else (50 if n < 24 else 1000)))
                    if n == polls // 2:
                        async with session.patch(f"{srv.url}/admin/tuning", json={"fit_load_factor": 0.6}) as r:
                            await r.read()
                        config.write_text(config.read_text().replace('level = "warning"', 'level = "info"'))
                        async with session.post(f"{srv.url}/admin/reload") as r:
                            await r.read()
                    await asyncio.sleep(max(0.0, t0 + n + 1 - time.monotonic()))
                    at = time.monotonic() - t0
                    async with session.get(f"{srv.url}/health") as r:
                        health = await r.json()
                    async with session.get(srv.metrics_url) as r:
                        metrics = keep_series(await r.text())
                    async with session.get(f"{srv.url}/config/status") as r:
                        status = await r.json()
                    async with session.get(f"{srv.url}/admin/tuning") as r:
                        tuning = await r.json()
                    if n:
                        status.pop("values", None)  # kept once, on the first line
                    lines.append(json.dumps({"at": round(at, 3), "health": health, "metrics": metrics,
                                             "status": status, "tuning": tuning}).replace(str(config), SHOWN_PATH))
                    print(f"poll {n + 1}/{polls}", file=sys.stderr)
                stop.set()
                await task
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--polls", type=int, default=40)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("session.jsonl"))
    args = p.parse_args()
    asyncio.run(record(args.polls, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
