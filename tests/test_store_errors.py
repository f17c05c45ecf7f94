"""Storage faults on a real server process: a full disk, a read-only store, a filesystem gone read-only, a corrupt file.

Each refused update gets a clear JSON error, changes nothing, is logged as
ERROR and counted in ``valkyrie_routing_errors_total``; lookups keep being
answered throughout. The filesystems are real (tmpfs, an ext4 loop image), so
these tests need root and are skipped without it.
"""

import re
import shutil
import subprocess
import urllib.request

import pytest

from tests.mounts import ext4_image, fill, fs_error, remount, tmpfs
from tests.realserver import REPO, RealServer, http, render_toml, server_command

ROUTES = REPO / "config" / "routes" / "example.toml"


def _config(directory, store):
    path = directory / "valkyrie.toml"
    path.write_text(render_toml({
        "server": {"host": "127.0.0.1", "port": 0},
        "routing": {"route_files": [str(ROUTES)], "store_path": str(store)},
        "observability.metrics": {"host": "127.0.0.1", "port": 0},
    }))
    return path


def _put(server, keys, hop="node-b"):
    return http("PUT", server.url + "/v1/routes", {"routes": [{"key": k, "next_hop": hop} for k in keys]})


def _hops(server, keys):
    status, body = http("POST", server.url + "/v1/route", {"keys": keys})
    assert status == 200, body
    return [r["next_hop"] if r["match"] == "exact" else None for r in body["results"]]


def _errors(server, code):
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    m = re.search(rf'^valkyrie_routing_errors_total{{code="{code}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _assert_refused(server, keys, status, code, words):
    """A PUT of ``keys`` is refused as (status, code) with a message holding ``words``; nothing of it shows; lookups work."""
    mark = server.mark()
    before = _errors(server, code)
    got_status, body = _put(server, keys)
    assert got_status == status and body["error"]["code"] == code, body
    for word in words:
        assert word in body["error"]["message"], body
    assert _hops(server, keys) == [None] * len(keys)
    assert _hops(server, ["job-42"]) == ["node-a"]  # a file route, served as before
    server.wait_for_line(r"ERROR route store refused", since=mark)
    assert _errors(server, code) == before + 1
    return body


def test_disk_full_refuses_updates_with_507_until_space_returns(tmp_path):
    with tmpfs(tmp_path / "fs", "512k") as fs:
        with RealServer(_config(tmp_path, fs / "routes.db")) as server:
            server.wait_ready()
            assert _put(server, ["before-1", "before-2"])[0] == 200
            filler = fill(fs)
            _assert_refused(server, [f"full-{i}" for i in range(200)], 507, "storage_full", ["no space left", str(fs)])
            filler.unlink()
            assert _put(server, ["after-1"])[0] == 200
        with RealServer(_config(tmp_path, fs / "routes.db")) as server:
            server.wait_ready()
            assert _hops(server, ["before-1", "before-2", "after-1", "full-0"]) == ["node-b"] * 3 + [None]


def test_read_only_store_at_startup_serves_its_routes_and_refuses_updates(tmp_path):
    with tmpfs(tmp_path / "fs", "1m") as fs:
        config = _config(tmp_path, fs / "routes.db")
        with RealServer(config) as server:
            server.wait_ready()
            assert _put(server, ["stored-1"])[0] == 200
        remount(fs, "ro")
        with RealServer(config) as server:
            server.wait_ready()
            server.wait_for_line(r"ERROR route store .* opened read-only")
            assert _hops(server, ["stored-1"]) == ["node-b"]  # the store was replayed
            _assert_refused(server, ["new-1"], 503, "storage_readonly", [str(fs / "routes.db"), "restarts"])
        remount(fs, "rw")
        with RealServer(config) as server:
            server.wait_ready()
            assert _put(server, ["new-1"])[0] == 200


def test_filesystem_turning_read_only_under_a_running_server(tmp_path):
    with ext4_image(tmp_path / "ext4") as (fs, sysfs):
        with RealServer(_config(tmp_path, fs / "routes.db")) as server:
            server.wait_ready()
            assert _put(server, ["before-1"])[0] == 200
            fs_error(sysfs)
            _assert_refused(server, ["after-1"], 503, "storage_readonly", ["cannot be written", str(fs)])
            assert _hops(server, ["before-1"]) == ["node-b"]
            assert server.stop() == 0  # shutting down on a broken store is still a clean exit


@pytest.mark.parametrize("damage", ["garbage", "torn page"])
def test_corrupt_store_fails_startup_saying_how_to_recover_and_the_recovery_works(tmp_path, damage):
    store = tmp_path / "state" / "routes.db"
    config = _config(tmp_path, store)
    dump = tmp_path / "backup.json"
    with RealServer(config) as server:
        server.wait_ready()
        keys = [f"api-{i:05d}" for i in range(3000)]
        assert _put(server, keys)[0] == 200
        cli = [*server_command(), "routes", "dump", "--url", server.url, "-o", str(dump)]
        assert subprocess.run(cli, capture_output=True, timeout=60).returncode == 0
    with open(store, "r+b") as fh:
        if damage == "garbage":
            fh.write(b"\x00garbage" * 512)
        else:
            fh.seek(4096 * 2)
            fh.write(bytes(range(256)) * 2)
    server = RealServer(config)
    try:
        server.start()
        assert server.proc.wait(60) == 2
    finally:
        server.stop()
    log = "\n".join(server.lines)
    assert f"route store {store} is corrupt" in log and f"mv {store} {store}.corrupt" in log
    assert "valkyrie-routing routes restore" in log
    assert "Traceback" not in log  # one clear message, not a stack trace after it

    # The recovery the message gives: move it aside, start (file routes only), restore the dump.
    shutil.move(store, f"{store}.corrupt")
    with RealServer(config) as server:
        server.wait_ready()
        assert _hops(server, ["api-00000"]) == [None] and _hops(server, ["job-42"]) == ["node-a"]
        restore = subprocess.run([*server_command(), "routes", "restore", str(dump), "--url", server.url],
                                 capture_output=True, text=True, timeout=120)
        assert restore.returncode == 0, restore.stderr
        assert _hops(server, keys) == ["node-b"] * len(keys)
