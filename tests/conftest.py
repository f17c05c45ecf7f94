"""Shared fixtures: a real Valkyrie server on ephemeral loopback ports with a real HTTP client."""

import asyncio
import tempfile
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from valkyrie.config import parse_config
from valkyrie.server import STATE, create_app, create_metrics_app

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"


def make_config(route_files=(str(EXAMPLE_ROUTES),), **sections):
    """A config on ephemeral loopback ports with the given route files and section overrides."""
    store = str(Path(tempfile.mkdtemp(prefix="valkyrie-test-")) / "routes.db")
    data = {"server": {"port": 0}, "observability": {"metrics": {"port": 0}},
            "routing": {"route_files": list(route_files), "store_path": store}}
    for name, values in sections.items():
        node = data
        for part in name.split("__"):
            node = node.setdefault(part, {})
        node.update(values)
    return parse_config(data)


async def wait_ready(client, timeout=120.0):
    """Poll /health until 200 (kernel compilation can take a while on a cold cache)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get("/health")
        if resp.status == 200:
            return await resp.json()
        body = await resp.json()
        if body.get("status") == "failed":
            raise AssertionError(f"server failed to start: {body}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"server not ready after {timeout}s: {body}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def api():
    """A started, ready server on the example table: yields a ``TestClient``."""
    app = create_app(make_config())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        yield client


@pytest.fixture
async def metrics_client(api):
    """The metrics app of the ``api`` server, on its own ephemeral port."""
    state = api.app[STATE]
    async with TestClient(TestServer(create_metrics_app(state), host="127.0.0.1", port=0)) as client:
        yield client
