"""Every validation message (the guide's three word for word), the CLI's exit codes as real processes,
and config/production.toml carrying every key with a comment."""

import re
import socket
import subprocess
import tomllib

import pytest

from tests.realserver import REPO, render_toml, server_command
from valkyrie.config import SCHEMA, ConfigError, load_config, parse_config, validate_updates
from valkyrie.system import memory_limit

PRODUCTION = REPO / "config" / "production.toml"


def problems(data):
    """The problems ``parse_config`` reports for ``data`` (empty when it is valid)."""
    try:
        parse_config(data)
    except ConfigError as exc:
        return exc.problems
    return []


# (config, the one problem it must produce, word for word)
MESSAGES = [
    # The guide's three, exactly as it prints them.
    ({"performance": {"performance_budget": "100us"}}, 'Performance budget "100us" exceeds requirement of 82µs'),
    ({"server": {"port": 9090}, "observability": {"metrics": {"port": 9090}}}, "Port conflict between HTTP and metrics endpoint"),
    # The budget is quoted as the operator wrote it.
    ({"performance": {"performance_budget": "0.1ms"}}, 'Performance budget "0.1ms" exceeds requirement of 82µs'),
    ({"performance": {"performance_budget": "83µs"}}, 'Performance budget "83µs" exceeds requirement of 82µs'),
    ({"routing": {"lockfree": {"fit_capacity": 1000}}}, "routing.lockfree.fit_capacity = 1000 is not a power of two (try 1024)"),
    ({"routing": {"lockfree": {"fit_capacity": 4}}}, "routing.lockfree.fit_capacity = 4 is below the minimum 8"),
    ({"routing": {"lockfree": {"fit_load_factor": 0.95}}}, "routing.lockfree.fit_load_factor = 0.95 must be in (0.1, 0.9]"),
    ({"routing": {"lockfree": {"fit_load_factor": 0.1}}}, "routing.lockfree.fit_load_factor = 0.1 must be in (0.1, 0.9]"),
    ({"routing": {"lockfree": {"fit_load_factor": 0}}}, "routing.lockfree.fit_load_factor = 0.0 must be in (0.1, 0.9]"),
    ({"routing": {"lockfree": {"fit_load_facter": 0.6}}},
     "unknown key 'fit_load_facter' in [routing.lockfree] (did you mean 'fit_load_factor'?)"),
    ({"enable_jemaloc": True}, "unknown key 'enable_jemaloc' in top level (did you mean 'enable_jemalloc'?)"),
    ({"routing": {"lockfre": {"fit_load_factor": 0.6}}}, "unknown section 'lockfre' in [routing] (did you mean 'lockfree'?)"),
    ({"observabilty": {"metrics": {"port": 9091}}}, "unknown section 'observabilty' in top level (did you mean 'observability'?)"),
    ({"server": {"zzz": 1}}, "unknown key 'zzz' in [server]"),
    ({"performance": {"enable_simd": "yes"}}, "performance.enable_simd: expected true or false, got 'yes'"),
    ({"routing": {"lockfree": {"fit_load_factor": "0.6"}}}, "routing.lockfree.fit_load_factor: expected a number, got '0.6'"),
    ({"server": {"port": "8080"}}, "server.port: expected an integer, got '8080'"),
    ({"server": {"port": 70000}}, "server.port: port 70000 is outside 0..65535"),
    ({"routing": {"lockfree": {"fit_capacity": 65536.0}}}, "routing.lockfree.fit_capacity: expected an integer, got 65536.0"),
    ({"cpu_cores": "0-7"}, "cpu_cores: expected a list of non-negative integers, got '0-7'"),
    ({"logging": {"format": "xml"}}, "logging.format: 'xml' is not one of plain, json"),
    ({"routing": {"route_cache_ttl": 300}},
     'routing.route_cache_ttl: 300 is not a duration; write it with a unit, e.g. "5ms" or "300s"'),
    ({"routing": {"lockfree": {"rcu_grace_period": "-5ms"}}}, "routing.lockfree.rcu_grace_period: duration '-5ms' is negative"),
    ({"server": {"keepalive_timeout": "-1s"}}, "server.keepalive_timeout: duration '-1s' is negative"),
    ({"performance": {"memory": {"max_heap_size": "-4GB"}}}, "performance.memory.max_heap_size: size '-4GB' is negative"),
    ({"caching": {"policies": {"max_cache_memory": "2 gigs"}}},
     "caching.policies.max_cache_memory: '2 gigs' is not a size; write a number and one of B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB)"),
    ({"logging": {"performance_interval": "0s"}}, "logging.performance_interval = 0s is below the minimum 100ms"),
    ({"routing": {"lockfree": {"cra_defrag_threshold": 1.5}}}, "routing.lockfree.cra_defrag_threshold = 1.5 is above the maximum 1.0"),
    ({"observability": {"metrics": {"path": "metrics"}}}, "observability.metrics.path = 'metrics' must start with '/'"),
    ({"server": 8080}, "[server] must be a table of keys, got server = 8080"),
]


@pytest.mark.parametrize("data, message", MESSAGES, ids=[m for _, m in MESSAGES])
def test_each_problem_has_its_message(data, message):
    assert problems(data) == [message]


def test_memory_total_is_checked_against_this_machine():
    limit = memory_limit()
    assert limit is not None and limit > 2 * 10**9
    cache = 10**9
    fits = {"performance": {"memory": {"max_heap_size": limit - cache}}, "caching": {"policies": {"max_cache_memory": cache}}}
    over = {"performance": {"memory": {"max_heap_size": limit - cache + 1}}, "caching": {"policies": {"max_cache_memory": cache}}}
    assert problems(fits) == []
    [message] = problems(over)
    assert message.startswith("Total memory allocation exceeds system limit: max_heap_size + max_cache_memory = ")
    assert f"this machine allows {limit / 1e9:.2f}GB" in message
    # The guide's own example (4GB heap + 2GB cache) needs a machine with 6GB; "1TB" fails anywhere this runs.
    assert problems({"performance": {"memory": {"max_heap_size": "1TB"}}})[0].startswith("Total memory allocation exceeds system limit")


@pytest.mark.parametrize("data", [
    {"performance": {"performance_budget": "82µs"}},
    {"performance": {"performance_budget": "82us"}},
    {"routing": {"lockfree": {"fit_load_factor": 0.9, "fit_capacity": 8}}},
    {"routing": {"lockfree": {"fit_load_factor": 0.1000001}}},
    {"server": {"port": 0}, "observability": {"metrics": {"port": 0}}},
    # Disabled metrics cannot conflict with the API port.
    {"server": {"port": 9090}, "observability": {"metrics": {"port": 9090, "enable": False}}},
    {"routing": {"lockfree": {"rcu_grace_period": "0s"}}},
])
def test_edge_values_that_are_valid(data):
    assert problems(data) == []


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(render_toml({
        "server": {"port": 9090, "prot": 1},
        "routing.lockfree": {"fit_load_factor": 0.95, "fit_capacity": 1000, "rcu_grace_period": "-5ms"},
        "performance": {"performance_budget": "100us", "enable_simd": "yes"},
        "observability.metrics": {"port": 9090},
    }))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 7, info.value.problems
    text = str(info.value)
    assert text.startswith(f"Configuration validation failed in {path}:")
    for fragment in ("'prot' in [server] (did you mean 'port'?)", "fit_load_factor = 0.95", "fit_capacity = 1000",
                     "'-5ms' is negative", 'Performance budget "100us"', "enable_simd: expected true or false",
                     "Port conflict between HTTP and metrics endpoint"):
        assert fragment in text


def test_a_grace_period_past_a_minute_is_refused_in_the_file_and_live():
    assert problems({"routing": {"lockfree": {"rcu_grace_period": "60s"}}}) == []
    assert problems({"routing": {"lockfree": {"rcu_grace_period": "1h"}}}) == [
        "routing.lockfree.rcu_grace_period = 3600s is above the maximum 60s"]
    with pytest.raises(ConfigError):
        validate_updates(parse_config({}), {"routing.lockfree.rcu_grace_period": "61s"})


def test_live_updates_are_checked_like_the_file():
    running = parse_config({})
    assert validate_updates(running, {"routing.lockfree.fit_load_factor": 0.6}) == {"routing.lockfree.fit_load_factor": 0.6}
    with pytest.raises(ConfigError) as info:
        validate_updates(running, {"routing.lockfree.fit_load_factor": 0.95, "performance.performance_budget": "90us",
                                   "server.port": 9090, "routing.nope": 1})
    assert info.value.problems == [
        "unknown key 'routing.nope'",
        "routing.lockfree.fit_load_factor = 0.95 must be in (0.1, 0.9]",
        'Performance budget "90us" exceeds requirement of 82µs',
        "Port conflict between HTTP and metrics endpoint",
    ]


def test_command_line_values_are_pinned_across_a_reload(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 8080\n[routing.lockfree]\nfit_load_factor = 0.75\n")
    running = load_config(path).pin(**{"server.port": 0})
    path.write_text("[server]\nport = 8080\n[routing.lockfree]\nfit_load_factor = 0.6\n")
    reloaded = running.repin(load_config(path))
    # Only the edit shows as a change; --port 0 is not mistaken for an edit of [server] port.
    assert running.diff(reloaded) == ["routing.lockfree.fit_load_factor"]
    assert reloaded["server.port"] == 0 and reloaded.pinned == {"server.port"}
    assert running.with_overrides(**{"logging.level": "debug"}).pinned == {"server.port"}


# ---- config/production.toml ------------------------------------------------------------------

# Every key the operators' guide shows, by section ("" is the top level).
GUIDE_KEYS = {
    "": ["cpu_cores", "enable_jemalloc"],
    "server": ["port", "worker_threads", "blocking_threads", "max_connections", "connection_timeout", "keepalive_timeout"],
    "routing": ["connection_pool_size", "max_concurrent_requests", "route_cache_size", "route_cache_ttl"],
    "routing.lockfree": ["fit_capacity", "fit_load_factor", "fit_hash_function", "cra_enable_compression",
                         "cra_initial_capacity", "cra_defrag_threshold", "rcu_grace_period", "rcu_max_pending_updates",
                         "rcu_aggressive_reclaim"],
    "performance": ["enable_simd", "enable_zero_copy", "enable_hot_path_optimization", "performance_budget"],
    "performance.memory": ["enable_memory_profiling", "gc_threshold", "max_heap_size"],
    "caching.policies": ["max_cache_memory"],
    "observability.metrics": ["enable", "port", "path"],
}

# The guide's TOML snippets, as printed: each must be a valid config on its own.
GUIDE_SNIPPETS = [
    "cpu_cores = [0, 1]\nenable_jemalloc = true\n",
    "[routing.lockfree]\nfit_capacity = 131072  # Double the capacity\nfit_load_factor = 0.6  # Reduce load factor\n",
    "[routing]\nconnection_pool_size = 2000\nmax_concurrent_requests = 100000\n",
    "[server]\nworker_threads = 16  # 2x CPU cores\nblocking_threads = 32\n",
    "[performance]\nenable_simd = true\nenable_zero_copy = true\nenable_hot_path_optimization = true\n",
    '[performance.memory]\nenable_memory_profiling = true\ngc_threshold = "4GB"\n',
    '[routing]\nroute_cache_size = 50000  # Reduce if too large\nroute_cache_ttl = "300s"\n\n'
    '[caching.policies]\nmax_cache_memory = "2GB"  # Set explicit limit\n',
    '[server]\nmax_connections = 50000\nconnection_timeout = "30s"\nkeepalive_timeout = "60s"\n',
    '[performance]\nperformance_budget = "75us"  # Must be ≤ 82µs\n',
    '[performance.memory]\nmax_heap_size = "4GB"  # Reduce heap size\n\n[caching.policies]\nmax_cache_memory = "2GB"\n',
    "[server]\nport = 8080\n\n[observability.metrics]\nport = 9090  # Use different port\n",
    '[routing.lockfree]\nfit_capacity = 131072\nfit_load_factor = 0.6\nfit_hash_function = "xxhash"\n',
    "[routing.lockfree]\ncra_enable_compression = true\ncra_initial_capacity = 65536\ncra_defrag_threshold = 0.25\n",
    '[routing.lockfree]\nrcu_grace_period = "5ms"\nrcu_max_pending_updates = 5000\nrcu_aggressive_reclaim = true\n',
    '[observability.metrics]\nenable = true\nport = 9090\npath = "/metrics"\n',
]


def _production_lines():
    """``{(section, key): comment}`` for every key line of config/production.toml."""
    section, out = "", {}
    for line in PRODUCTION.read_text().splitlines():
        if m := re.match(r"^\[([^\]]+)\]\s*(#.*)?$", line):
            section = m.group(1)
        elif m := re.match(r"^(\w+)\s*=\s*(.*?)\s*(?:#\s*(.*))?$", line):
            out[(section, m.group(1))] = m.group(3) or ""
    return out


def test_production_config_validates_clean():
    config = load_config(PRODUCTION)
    assert config["performance.performance_budget"] == pytest.approx(75e-6)


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in GUIDE_KEYS.items() for k in keys])
def test_production_config_has_every_guide_key_with_a_comment(section, key):
    comment = _production_lines().get((section, key))
    assert comment is not None, f"[{section}] {key} missing from config/production.toml"
    assert len(comment) > 10, f"[{section}] {key} has no comment saying what it does"


def test_production_config_has_every_schema_key_with_a_comment():
    lines = _production_lines()
    for section, fields in SCHEMA.items():
        for key in fields:
            assert lines.get((section, key)), f"[{section}] {key} is in the schema but not commented in production.toml"


@pytest.mark.parametrize("snippet", GUIDE_SNIPPETS)
def test_guide_snippets_are_valid(snippet):
    assert problems(tomllib.loads(snippet)) == []


# ---- the CLI, as real processes --------------------------------------------------------------


def cli(*args, timeout=60):
    """Run ``valkyrie-routing ARGS``; the finished process."""
    return subprocess.run([*server_command(), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listed(stderr):
    """The ``  - problem`` lines of an error report."""
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


def test_validate_config_exit_0_for_production():
    proc = cli("--validate-config", str(PRODUCTION))
    assert proc.returncode == 0, proc.stderr
    assert "configuration is valid" in proc.stdout and proc.stderr == ""


def test_validate_config_exit_2_listing_every_problem(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(render_toml({
        "": {"enable_jemaloc": True},
        "server": {"port": 9090},
        "routing.lockfree": {"fit_capacity": 1000, "fit_load_factor": 0.05},
        "performance": {"performance_budget": "100us"},
        "performance.memory": {"max_heap_size": "1TB"},
        "observability.metrics": {"port": 9090},
    }))
    proc = cli("--validate-config", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: Configuration validation failed in {path}:")
    got = listed(proc.stderr)
    assert len(got) == 6, proc.stderr
    assert 'Performance budget "100us" exceeds requirement of 82µs' in got
    assert "Port conflict between HTTP and metrics endpoint" in got
    assert any(p.startswith("Total memory allocation exceeds system limit") for p in got)
    assert "unknown key 'enable_jemaloc' in top level (did you mean 'enable_jemalloc'?)" in got


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read"),
    ("[server\nport = 1\n", "TOML syntax"),
    (b"\xff\xfe[server]", "not UTF-8"),
])
def test_validate_config_exit_2_for_unreadable_files(tmp_path, content, fragment):
    path = tmp_path / "c.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    proc = cli("--validate-config", str(path))
    assert proc.returncode == 2 and fragment in proc.stderr and str(path) in proc.stderr, proc.stderr


def test_validate_config_reads_the_route_files_serve_would_refuse(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("prefix,next_hop\n10.0.0.0/8,node-a\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,next_hop\n10.0.0.0/33,node-a\n")
    path = tmp_path / "c.toml"
    path.write_text(render_toml({"routing": {"route_files": [str(good), str(bad), str(tmp_path / "missing.toml")]}}))
    proc = cli("--validate-config", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    got = listed(proc.stderr)
    assert len(got) == 2 and got[0].startswith(f"{bad}:2") and "cannot read" in got[1], proc.stderr
    path.write_text(render_toml({"routing": {"route_files": [str(good)]}}))
    proc = cli("--validate-config", str(path))
    assert proc.returncode == 0 and "configuration is valid (1 route file, 1 routes)" in proc.stdout, proc.stderr


def test_check_conflicts_exit_0_when_clean(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(render_toml({"server": {"port": free_port()}, "observability.metrics": {"port": free_port()}}))
    proc = cli("--check-conflicts", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "no conflicts" in proc.stdout


def test_check_conflicts_exit_2_listing_every_conflict(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text(render_toml({
            "": {"cpu_cores": [0, 4096]},
            "server": {"port": port, "worker_threads": 4096, "max_connections": 100},
            "routing": {"connection_pool_size": 5000, "max_concurrent_requests": 1000},
            "observability.metrics": {"host": "192.0.2.1", "port": free_port()},
        }))
        proc = cli("--check-conflicts", str(path))
    assert proc.returncode == 2
    got = listed(proc.stderr)
    assert proc.stderr.startswith(f"Error: {len(got)} conflict(s) in {path}:")
    expected = [
        r"cpu_cores names CPU\(s\) \[4096\] but this machine offers \[",
        r"server.worker_threads = 4096 is more than 8 per CPU",
        r"routing.connection_pool_size = 5000 exceeds routing.max_concurrent_requests = 1000",
        r"server.max_connections = 100 is below routing.connection_pool_size = 5000",
        rf"HTTP port 127.0.0.1:{port} is already in use on this machine",
        # An address this machine does not have is not "in use": say what is wrong.
        r"metrics port 192.0.2.1:\d+ cannot be bound: Cannot assign requested address",
    ]
    assert len(got) == len(expected), proc.stderr
    for pattern, line in zip(expected, got):
        assert re.match(pattern, line), (pattern, line)


def test_check_conflicts_exit_2_on_an_invalid_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(render_toml({"server": {"port": 9090}, "observability.metrics": {"port": 9090}}))
    proc = cli("--check-conflicts", str(path))
    assert proc.returncode == 2 and "Port conflict between HTTP and metrics endpoint" in proc.stderr


def test_command_line_port_is_validated_like_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(render_toml({"observability.metrics": {"port": 9099}}))
    proc = cli("--config", str(path), "--port", "9099")
    assert proc.returncode == 2
    assert "Port conflict between HTTP and metrics endpoint" in proc.stderr


def test_the_guides_appended_top_level_keys_are_read_from_the_last_table(tmp_path, caplog):
    """`echo 'cpu_cores = [...]' >> production.toml` puts the key under the file's last table."""
    path = tmp_path / "production.toml"
    path.write_text((REPO / "config" / "production.toml").read_text()
                    + "cpu_cores = [0, 1]\n" + "enable_jemalloc = true\n")
    cfg = load_config(path)
    assert cfg["cpu_cores"] == [0, 1] and cfg["enable_jemalloc"] is True
    assert "read as the top-level key and overrides the value set above" in caplog.text
    path.write_text("[logging]\nlevel = \"info\"\ncpu_cores = [0]\n")
    assert load_config(path)["cpu_cores"] == [0]


def test_relative_paths_resolve_against_the_config_file_and_are_normalised(tmp_path):
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "valkyrie.toml"
    path.write_text('[routing]\nstore_path = "../var/routes.db"\n')
    assert load_config(path)["routing.store_path"] == str(tmp_path / "var" / "routes.db")
