"""``valkyrie-routing routes dump|restore|load`` against real server processes, run as the real command."""

import ipaddress
import json
import random
import subprocess

from tests.mounts import remount, tmpfs
from tests.realserver import RealServer, http, render_toml, server_command, write_config


def cli(*args, timeout=120):
    """Run ``valkyrie-routing ARGS``; returns the CompletedProcess (text)."""
    return subprocess.run([*server_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _ok(status_body):
    status, body = status_body
    assert 200 <= status < 300, body
    return body


def _table(server):
    body = _ok(http("GET", server.url + "/v1/routes", timeout=60))
    return body["routes"], body["nodes"], body["default_route"]


def _probes(routes, rng, extra=200):
    """A key inside every route, plus random addresses and names that may hit nothing."""
    keys = []
    for r in routes:
        if "key" in r:
            keys.append(r["key"])
        elif "/" in r["prefix"]:
            net = ipaddress.ip_network(r["prefix"])
            keys.append(str(net.network_address + rng.randrange(net.num_addresses)))
        else:
            keys.append(r["prefix"] + "probe")
    keys += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(extra)]
    return keys + ["nothing-here", "ci.build.x", "2001:db8::1"]


def _answers(server, keys):
    body = _ok(http("POST", server.url + "/v1/route", {"keys": keys}, timeout=60))
    return [(r["next_hop"], r["match"], r.get("prefix")) for r in body["results"]]


def _change_a_lot(server, rng):
    """API changes of every kind on top of the example table: nodes, all route families, deletions, default route."""
    nodes = [{"id": f"pop-{i}", "address": f"10.9.0.{i}:7000", "weight": i} for i in range(5)]
    routes = [{"prefix": f"100.{i >> 8}.{i & 255}.0/24", "next_hop": f"pop-{i % 5}"} for i in range(1500)]
    routes += [{"prefix": f"100.{i >> 8}.{i & 255}.128/25", "next_hop": f"pop-{(i + 1) % 5}"} for i in range(0, 1500, 7)]
    routes += [{"prefix": f"2001:db8:{i:x}::/48", "next_hop": "node-b"} for i in range(300)]
    routes += [{"prefix": f"svc.{i}.", "next_hop": "pop-2"} for i in range(200)]
    routes += [{"key": f"job,{i}\n\"quoted\"", "next_hop": "pop-3"} for i in range(100)]
    _ok(http("PUT", server.url + "/v1/routes", {"nodes": nodes, "routes": routes, "default_route": "pop-4"}))
    _ok(http("PUT", server.url + "/v1/routes", {"nodes": [{"id": "node-a", "address": "10.8.8.8:1", "shard": 3}]}))
    gone = [{"prefix": "203.0.113.0/24"}, {"key": "job-42"}] + [{"prefix": r["prefix"]} for r in rng.sample(routes[:1500], 100)]
    _ok(http("DELETE", server.url + "/v1/routes", {"routes": gone}))


def test_dump_then_restore_into_a_fresh_server_gives_identical_answers(tmp_path):
    rng = random.Random(11)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    dump = tmp_path / "backup.json"
    with RealServer(write_config(tmp_path / "a")) as source, RealServer(write_config(tmp_path / "b")) as fresh:
        source.wait_ready()
        fresh.wait_ready()
        _change_a_lot(source, rng)
        done = cli("routes", "dump", "--url", source.url, "-o", dump)
        assert done.returncode == 0, done.stderr
        routes, nodes, default = _table(source)
        assert f"dump: {len(routes)} routes" in done.stderr
        assert json.loads(dump.read_text())["routes"] == routes
        keys = _probes(routes, rng)
        expected = _answers(source, keys)

        done = cli("routes", "restore", dump, "--url", fresh.url, "--batch-size", 500)
        assert done.returncode == 0, done.stderr
        assert "to delete" in done.stderr and "batch" in done.stderr and "matches" in done.stderr
        assert _answers(fresh, keys) == expected
        assert _table(fresh) == (routes, nodes, default)
        # A second restore finds nothing left to change.
        again = cli("routes", "restore", dump, "--url", fresh.url)
        assert again.returncode == 0 and "0 nodes and 0 routes to put, 0 to delete" in again.stderr, again.stderr
    with RealServer(write_config(tmp_path / "b")) as restarted:
        restarted.wait_ready()
        assert _answers(restarted, keys) == expected


def test_csv_dump_restores_routes_once_the_nodes_are_known(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with RealServer(write_config(tmp_path / "a")) as source, RealServer(write_config(tmp_path / "b")) as fresh:
        source.wait_ready()
        fresh.wait_ready()
        _change_a_lot(source, random.Random(5))
        dump = tmp_path / "routes.csv"
        assert cli("routes", "dump", "--url", source.url, "--format", "csv", "-o", dump).returncode == 0
        assert dump.read_text().startswith("kind,route,next_hop\n")
        before = _table(fresh)
        refused = cli("routes", "restore", dump, "--url", fresh.url)
        assert refused.returncode == 2 and "'pop-0'" in refused.stderr and "routes load" in refused.stderr
        assert _table(fresh) == before  # refused before sending anything
        nodes = tmp_path / "nodes.csv"
        nodes.write_text("id,address\n" + "".join(f"pop-{i},10.9.0.{i}:7000\n" for i in range(5)))
        assert cli("routes", "load", nodes, "--url", fresh.url).returncode == 0
        done = cli("routes", "restore", dump, "--url", fresh.url)
        assert done.returncode == 0, done.stderr
        assert _table(fresh)[0] == _table(source)[0]


def test_dump_of_a_filter_and_to_stdout(tmp_path):
    with RealServer(write_config(tmp_path)) as server:
        server.wait_ready()
        done = cli("routes", "dump", "--url", server.url, "--format", "csv", "--prefix", "198.51.100.0/24")
        assert done.returncode == 0
        assert done.stdout.splitlines() == ["kind,route,next_hop", "prefix,198.51.100.0/24,node-a",
                                            "prefix,198.51.100.128/25,node-b"]


BAD_FILES = [
    ("empty.json", "", "empty file"),
    ("broken.json", '{"routes": [', "malformed JSON"),
    ("list.json", "[1, 2]", "expected a JSON object"),
    ("extra.json", '{"routes": [], "tables": {}}', "unknown field(s) tables"),
    ("page.json", '{"routes": [], "next": "/v1/routes?cursor=abc"}', "one page of a paged listing"),
    ("badroute.json", '{"routes": [{"prefix": "10.0.0.0/33", "next_hop": "node-a"}]}', "routes[0]"),
    ("dup.json", '{"routes": [{"key": "a", "next_hop": "node-a"}, {"key": "a", "next_hop": "node-b"}]}', "repeats"),
    ("badnode.json", '{"nodes": [{"id": "x", "address": "nowhere"}], "routes": []}', "nodes[0]"),
    ("ghost.json", '{"routes": [{"key": "a", "next_hop": "ghost"}]}', "'ghost'"),
    ("header.csv", "prefix,next_hop\n10.0.0.0/8,node-a\n", "header must be kind,route,next_hop"),
    ("row.csv", "kind,route,next_hop\nprefix,10.0.0.0/8,node-a\nroute,x,node-a\n", "row.csv:3"),
    ("latin1.csv", b"kind,route,next_hop\nkey,caf\xe9,node-a\n", "not valid UTF-8"),
    ("missing.json", None, "cannot read"),
]


def test_restore_refuses_bad_files_with_exit_2_and_changes_nothing(tmp_path):
    with RealServer(write_config(tmp_path)) as server:
        server.wait_ready()
        before = _table(server)
        epoch = _ok(http("GET", server.url + "/health"))["epoch"]
        for name, content, words in BAD_FILES:
            path = tmp_path / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            elif content is not None:
                path.write_text(content)
            done = cli("routes", "restore", path, "--url", server.url)
            assert done.returncode == 2 and done.stderr.startswith("Error: "), (name, done.stderr)
            assert words in done.stderr, (name, done.stderr)
        assert _table(server) == before and _ok(http("GET", server.url + "/health"))["epoch"] == epoch


def test_no_server_and_refused_requests_exit_2(tmp_path):
    dump = tmp_path / "out.json"
    done = cli("routes", "dump", "--url", "http://127.0.0.1:9", "-o", dump)
    assert done.returncode == 2 and "no server at http://127.0.0.1:9" in done.stderr and not dump.exists()
    with RealServer(write_config(tmp_path), env={"VALKYRIE_ADMIN_TOKEN": "s3cret"}) as server:
        server.wait_ready()
        bad = cli("routes", "dump", "--url", server.url, "--prefix", "10.", "-o", dump)
        assert bad.returncode == 2 and "invalid_query" in bad.stderr and not dump.exists()
        assert cli("routes", "dump", "--url", server.url, "-o", dump).returncode == 0
        table = json.loads(dump.read_text())
        table["routes"].append({"key": "token-test", "next_hop": "node-a"})
        dump.write_text(json.dumps(table))
        denied = cli("routes", "restore", dump, "--url", server.url)
        assert denied.returncode == 2 and "HTTP 401 unauthorized" in denied.stderr, denied.stderr
        assert "Batches 1-0 were applied" in denied.stderr
        done = cli("routes", "restore", dump, "--url", server.url, "--token", "s3cret")
        assert done.returncode == 0, done.stderr
        assert _answers(server, ["token-test"]) == [("node-a", "exact", None)]


def test_load_pushes_toml_and_csv_route_files(tmp_path):
    with RealServer(write_config(tmp_path)) as server:
        server.wait_ready()
        toml = tmp_path / "more.toml"
        toml.write_text('[[nodes]]\nid = "pop-x"\naddress = "10.0.0.1:1"\n\n'
                        '[[routes]]\nprefix = "172.16.0.0/12"\nnext_hop = "pop-x"\n')
        done = cli("routes", "load", toml, "--url", server.url)
        assert done.returncode == 0 and "1 nodes, 1 routes" in done.stderr, done.stderr
        routes = tmp_path / "routes.csv"
        routes.write_text("prefix,next_hop\n" + "".join(f"172.20.{i}.0/24,pop-x\n" for i in range(250)))
        assert cli("routes", "load", routes, "--url", server.url, "--batch-size", 100).returncode == 0
        assert _answers(server, ["172.16.1.1", "172.20.249.9"]) == [("pop-x", "prefix", "172.16.0.0/12"),
                                                                    ("pop-x", "prefix", "172.20.249.0/24")]
        bad = tmp_path / "bad.csv"
        bad.write_text("prefix,next_hop\n10.0.0.0/8,pop-x\n10.0.0.0/40,pop-x\n")
        done = cli("routes", "load", bad, "--url", server.url)
        assert done.returncode == 2 and f"{bad}:3" in done.stderr
        unknown = tmp_path / "unknown.csv"
        unknown.write_text("key,next_hop\nk1,nobody\n")
        done = cli("routes", "load", unknown, "--url", server.url)
        assert done.returncode == 2 and "HTTP 422 unknown_next_hop" in done.stderr and "nobody" in done.stderr


def test_restore_cut_short_by_a_full_disk_applies_whole_batches_and_finishes_when_rerun(tmp_path):
    rng = random.Random(3)
    big = tmp_path / "big.json"
    routes = [{"key": f"restore-{i:06d}-{rng.getrandbits(64):016x}", "next_hop": "node-a"} for i in range(30000)]
    big.write_text(json.dumps({"routes": routes}))
    with tmpfs(tmp_path / "fs", "640k") as fs:
        config = tmp_path / "valkyrie.toml"
        config.write_text(render_toml({
            "server": {"host": "127.0.0.1", "port": 0},
            "routing": {"route_files": [], "store_path": str(fs / "routes.db")},
            "observability.metrics": {"host": "127.0.0.1", "port": 0},
        }))
        with RealServer(config) as server:
            server.wait_ready()
            _ok(http("PUT", server.url + "/v1/routes", {"nodes": [{"id": "node-a"}]}))
            done = cli("routes", "restore", big, "--url", server.url, "--batch-size", 1000)
            assert done.returncode == 2 and "HTTP 507 storage_full" in done.stderr, done.stderr
            applied = int(done.stderr.split("Batches 1-")[1].split(" ")[0])
            assert 0 < applied < 30
            listed = _table(server)[0]
            # Whole batches only: exactly the first `applied` thousand routes, none of the refused one.
            assert sorted(r["key"] for r in listed) == sorted(r["key"] for r in routes[:applied * 1000])
            remount(fs, "size=64m")
            done = cli("routes", "restore", big, "--url", server.url, "--batch-size", 1000)
            assert done.returncode == 0, done.stderr
            assert f"{30000 - applied * 1000} routes to put" in done.stderr
            assert len(_table(server)[0]) == 30000


def test_restore_compares_routes_by_meaning_not_spelling(tmp_path):
    with RealServer(write_config(tmp_path)) as server:
        server.wait_ready()
        dump = tmp_path / "dump.json"
        assert cli("routes", "dump", "--url", server.url, "-o", dump).returncode == 0
        table = json.loads(dump.read_text())
        respelled = [r for r in table["routes"] if r.get("prefix") == "2001:db8::/32"]
        assert len(respelled) == 1
        respelled[0]["prefix"] = "2001:DB8:0::/32"
        dump.write_text(json.dumps(table))
        done = cli("routes", "restore", dump, "--url", server.url)
        # The same route written differently is the same route: nothing to put, and above all nothing deleted.
        assert done.returncode == 0 and "0 nodes and 0 routes to put, 0 to delete" in done.stderr, done.stderr
