"""Configuration: the schema of every key, defaults, parsing and validation.

A config is a flat mapping ``"section.key" -> value`` with units already
applied (durations in seconds, sizes in bytes). Every problem in a file is
collected and reported at once in a ``ConfigError``.
"""

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from valkyrie.system import memory_limit
from valkyrie.units import format_duration, parse_duration, parse_size

log = logging.getLogger("valkyrie.config")

__all__ = ["Config", "ConfigError", "Field", "SCHEMA", "load_config", "parse_config", "validate_updates",
           "display_value", "DEFAULT_CONFIG_PATH"]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "default.toml"

# The guide's latency budget for one routing decision.
BUDGET_SECONDS = 82e-6


class ConfigError(ValueError):
    """A config file with one or more problems; ``problems`` lists each one."""

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"Configuration validation failed{where}:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class Field:
    """One config key: its kind, default and what it does."""

    kind: str  # int, float, bool, str, duration, size, port, path, int_list, path_list
    default: object
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None


def _f(kind, default, doc, **kw):
    return Field(kind, default, doc, **kw)


SCHEMA = {
    "": {
        "cpu_cores": _f("int_list", [], "CPU ids the process is pinned to (empty: no pinning)"),
        "enable_jemalloc": _f("bool", False, "re-exec with libjemalloc preloaded when present"),
    },
    "server": {
        "host": _f("str", "127.0.0.1", "address the HTTP API binds"),
        "port": _f("port", 8080, "HTTP API port"),
        "worker_threads": _f("int", 4, "not used: lookups run on the event-loop thread; --check-conflicts still checks it", minimum=1),
        "blocking_threads": _f("int", 8, "threads for blocking work: config and route file reads, heap profiles, forced GC", minimum=1),
        "max_connections": _f("int", 10000, "open HTTP API connections; past it a new one is answered 503 "
                                            "too_many_connections and closed (live)", minimum=1),
        "connection_timeout": _f("duration", 30.0, "deadline for a request body to arrive (408 after it; 0 = none)"),
        "keepalive_timeout": _f("duration", 60.0, "idle time before a keep-alive connection closes"),
        "max_batch_keys": _f("int", 100000, "keys accepted in one lookup or update batch", minimum=1),
        "max_body_size": _f("size", 64 * 2**20, "largest request body accepted"),
        "admin_token_file": _f("path", "", "file holding the bearer token for update and admin endpoints"),
    },
    "routing": {
        "connection_pool_size": _f("int", 1000, "concurrent requests admitted before queueing", minimum=1),
        "max_concurrent_requests": _f("int", 10000, "requests in flight before 503 overload", minimum=1),
        "route_cache_size": _f("int", 50000, "entries in the prefix-resolution cache (0 disables)", minimum=0),
        "route_cache_ttl": _f("duration", 300.0, "lifetime of a cached prefix resolution"),
        "route_files": _f("path_list", [], "route tables (TOML or CSV) loaded at start, relative to this file"),
        "default_table": _f("str", "default", "table used when a request names none"),
        "store_path": _f("path", "valkyrie-routes.db", "SQLite file keeping API route changes across restarts; empty: not kept"),
    },
    "routing.lockfree": {
        "fit_capacity": _f("int", 65536, "initial FIT slots (power of two, at most 2^28: 1.25 GiB of slots); grows to "
                                         "honour the load factor", minimum=8, maximum=1 << 28),
        "fit_load_factor": _f("float", 0.75, "FIT entries / slots before growing, in (0.1, 0.9]"),
        "fit_hash_function": _f("str", "xxhash", "FIT key hash; xxh64 is the one implemented (xxhash names it too)", choices=("xxhash", "xxh64")),
        "cra_enable_compression": _f("bool", True, "always on: the name arena is path-compressed by construction; false changes nothing"),
        "cra_initial_capacity": _f("int", 65536, "initial CRA arena slots", minimum=256),
        "cra_defrag_threshold": _f("float", 0.25, "dead/total arena slots that triggers defragmentation", minimum=0.0, maximum=1.0),
        # Every publish within a grace period keeps one more snapshot alive: an hour of them is unbounded memory.
        "rcu_grace_period": _f("duration", 0.005, "minimum time a retired snapshot is kept after readers left (at most 60s)",
                               maximum=60.0),
        "rcu_max_pending_updates": _f("int", 5000, "route changes coalesced into one snapshot", minimum=1),
        "rcu_aggressive_reclaim": _f("bool", False, "reclaim on every publish instead of on a timer"),
    },
    "performance": {
        "enable_simd": _f("bool", True, "always on: LLVM vectorises the kernels where it can; false changes nothing"),
        "enable_zero_copy": _f("bool", True, "always on: packed batches are resolved from the request buffer; false changes nothing"),
        "enable_hot_path_optimization": _f("bool", True, "always on: every kernel is warmed before /health says ready; false changes nothing"),
        "performance_budget": _f("duration", BUDGET_SECONDS, "P99 routing-decision budget; at most 82µs"),
    },
    "performance.memory": {
        "enable_memory_profiling": _f("bool", False, "run tracemalloc so SIGUSR1 heap profiles show allocations"),
        "gc_threshold": _f("size", 4 * 10**9, "RSS above which a GC, RCU reclaim and malloc_trim are forced (checked every 5s)"),
        "max_heap_size": _f("size", 4 * 10**9, "memory budget of the route tables; with max_cache_memory checked against the machine"),
        "heap_profile_path": _f("path", "", "where SIGUSR1 writes the heap profile (empty: the temp dir)"),
    },
    "caching.policies": {
        "max_cache_memory": _f("size", 2 * 10**9, "memory the route cache may use"),
    },
    "observability.metrics": {
        "enable": _f("bool", True, "serve Prometheus metrics"),
        "host": _f("str", "127.0.0.1", "address the metrics endpoint binds"),
        "port": _f("port", 9090, "Prometheus metrics port"),
        "path": _f("str", "/metrics", "Prometheus metrics path"),
    },
    "logging": {
        "level": _f("str", "info", "least severe level written", choices=("debug", "info", "warning", "error")),
        "format": _f("str", "plain", "line format", choices=("plain", "json")),
        "file": _f("path", "", "log file (rotated) in addition to stderr; empty for stderr only"),
        "performance_interval": _f("duration", 60.0, "how often a 'performance' line is logged", minimum=0.1),
        "file_max_size": _f("size", 64 * 2**20, "size at which the log file is rotated", minimum=1024),
        "file_backups": _f("int", 5, "rotated log files kept (valkyrie.log.1 ...)", minimum=1),
    },
}


class Config:
    """A validated configuration: ``config["routing.lockfree.fit_load_factor"]``.

    ``pinned`` names keys set on the command line (``--port 0``): a reload of the file keeps them.
    """

    def __init__(self, values, source=None, pinned=()):
        self._values = dict(values)
        self.source = source
        self.pinned = frozenset(pinned)

    def __getitem__(self, dotted):
        return self._values[dotted]

    def get(self, dotted, default=None):
        """Value of ``"section.key"`` or ``default``."""
        return self._values.get(dotted, default)

    def items(self):
        """Every ``("section.key", value)`` pair."""
        return self._values.items()

    def with_overrides(self, **dotted_values):
        """A copy with some keys replaced; ``with_overrides(**{"server.port": 0})``."""
        values = dict(self._values)
        values.update(dotted_values)
        return Config(values, self.source, self.pinned)

    def pin(self, **dotted_values):
        """A copy with command-line values a reload keeps: ``pin(**{"server.port": 0})``."""
        return Config({**self._values, **dotted_values}, self.source, self.pinned | set(dotted_values))

    def repin(self, reloaded):
        """``reloaded`` (a fresh read of this config's file) with this config's pinned values on top."""
        return reloaded.pin(**{k: self._values[k] for k in self.pinned})

    def diff(self, other):
        """Keys whose value differs between ``self`` and ``other``."""
        return sorted(k for k in self._values if self._values[k] != other._values.get(k))

    def __repr__(self):
        return f"Config(source={str(self.source)!r})"

    def __eq__(self, other):
        return isinstance(other, Config) and self._values == other._values


def _dotted(section, key):
    return f"{section}.{key}" if section else key


def _convert(field, value, base_dir):
    kind = field.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if kind == "port" and not 0 <= value <= 65535:
            raise ValueError(f"port {value} is outside 0..65535")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        if field.choices and value not in field.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(field.choices)}")
        return value
    if kind == "duration":
        return parse_duration(value)
    if kind == "size":
        return parse_size(value)
    if kind == "path":
        if not isinstance(value, str):
            raise ValueError(f"expected a path string, got {value!r}")
        # Normalised, so status pages and logs show config/../var/x.db as var/x.db.
        return os.path.normpath(base_dir / value) if value and base_dir else value
    if kind == "int_list":
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise ValueError(f"expected a list of non-negative integers, got {value!r}")
        return list(value)
    if kind == "path_list":
        if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of path strings, got {value!r}")
        return [str(base_dir / v) if base_dir else v for v in value]
    raise AssertionError(f"unknown field kind {kind}")


def _range_checks(field, dotted, value):
    # Durations are held in seconds; quote them the way the file writes them.
    show = format_duration if field.kind == "duration" else repr
    if field.minimum is not None and value < field.minimum:
        yield f"{dotted} = {show(value)} is below the minimum {show(field.minimum)}"
    if field.maximum is not None and value > field.maximum:
        yield f"{dotted} = {show(value)} is above the maximum {show(field.maximum)}"


def _did_you_mean(name, candidates):
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_section(dotted):
    return any(s == dotted or s.startswith(dotted + ".") for s in SCHEMA)


def _walk(table, section, problems, out, base_dir, raw):
    for key, value in table.items():
        dotted = _dotted(section, key)
        if isinstance(value, dict) and _is_section(dotted):
            _walk(value, dotted, problems, out, base_dir, raw)
            continue
        if _is_section(dotted):
            problems.append(f"[{dotted}] must be a table of keys, got {key} = {value!r}")
            continue
        fields = SCHEMA.get(section, {})
        if key not in fields and section and key in SCHEMA[""] and not isinstance(value, dict):
            # The guide's `echo 'cpu_cores = [...]' >> production.toml` lands in the file's last table;
            # being the later line, it wins over a top-level value, as the guide means it to.
            again = " and overrides the value set above" if key in raw else ""
            log.warning("WARN config: %s found under [%s] is read as the top-level key%s (a line appended "
                        "to the file lands in its last table; move it above the first [section])", key, section, again)
            section, fields, dotted = "", SCHEMA[""], key
        if key not in fields:
            prefix = section + "." if section else ""
            candidates = list(fields) + [s[len(prefix):].split(".")[0] for s in SCHEMA if s and s.startswith(prefix)]
            kind = "section" if isinstance(value, dict) else "key"
            where = f"[{section}]" if section else "top level"
            problems.append(f"unknown {kind} {key!r} in {where}{_did_you_mean(key, candidates)}")
            continue
        field = fields[key]
        raw[dotted] = value
        try:
            out[dotted] = _convert(field, value, base_dir)
        except ValueError as exc:
            problems.append(f"{dotted}: {exc}")
            continue
        problems.extend(_range_checks(field, dotted, out[dotted]))


def _semantic_checks(values, raw=None):
    """Problems between keys or against the guide's limits; ``raw`` holds the values as written."""
    lf = values["routing.lockfree.fit_load_factor"]
    if not 0.1 < lf <= 0.9:
        yield f"routing.lockfree.fit_load_factor = {lf} must be in (0.1, 0.9]"
    cap = values["routing.lockfree.fit_capacity"]
    # A capacity below the minimum is already reported; no power-of-two advice for it.
    if cap > 0 and cap & (cap - 1):
        yield f"routing.lockfree.fit_capacity = {cap} is not a power of two (try {1 << (cap - 1).bit_length()})"
    budget = values["performance.performance_budget"]
    if budget > BUDGET_SECONDS + 1e-12:
        written = (raw or {}).get("performance.performance_budget")
        yield f'Performance budget "{written if isinstance(written, str) else _budget_text(budget)}" exceeds requirement of 82µs'
    if values["server.port"] == values["observability.metrics.port"] and values["server.port"] != 0 and values["observability.metrics.enable"]:
        yield "Port conflict between HTTP and metrics endpoint"
    limit = memory_limit()
    total = values["performance.memory.max_heap_size"] + values["caching.policies.max_cache_memory"]
    if limit is not None and total > limit:
        yield (f"Total memory allocation exceeds system limit: max_heap_size + max_cache_memory = "
               f"{total / 1e9:.2f}GB but this machine allows {limit / 1e9:.2f}GB")
    path = values["observability.metrics.path"]
    if not path.startswith("/"):
        yield f"observability.metrics.path = {path!r} must start with '/'"


def _budget_text(seconds):
    us = seconds * 1e6
    return f"{us:g}us"


def validate_updates(config, raw):
    """Parse ``{"section.key": raw_value}`` exactly as the file would be, against ``config``.

    Returns the parsed values, or raises ``ConfigError`` listing every problem.
    """
    problems, parsed = [], {}
    for dotted, value in raw.items():
        section, _, key = dotted.rpartition(".")
        field = SCHEMA.get(section, {}).get(key)
        if field is None:
            problems.append(f"unknown key {dotted!r}")
            continue
        try:
            parsed[dotted] = _convert(field, value, None)
        except ValueError as exc:
            problems.append(f"{dotted}: {exc}")
            continue
        problems.extend(_range_checks(field, dotted, parsed[dotted]))
    merged = dict(config.items())
    merged.update(parsed)
    # Only problems the update introduces: the running config's own are not this request's fault.
    existing = set(_semantic_checks(dict(config.items())))
    problems.extend(p for p in _semantic_checks(merged, raw) if p not in existing)
    if problems:
        raise ConfigError(problems)
    return parsed


def defaults():
    """The schema's default values, flat."""
    return {_dotted(s, k): f.default for s, fields in SCHEMA.items() for k, f in fields.items()}


def parse_config(data, source=None, base_dir=None):
    """Validate a parsed TOML mapping into a ``Config``; raise ``ConfigError`` listing every problem."""
    problems = []
    values = defaults()
    parsed, raw = {}, {}
    _walk(data, "", problems, parsed, Path(base_dir) if base_dir else None, raw)
    values.update(parsed)
    # Keys that failed to parse still hold their (valid) defaults, so these checks never double-report.
    problems.extend(_semantic_checks(values, raw))
    if problems:
        raise ConfigError(problems, source)
    return Config(values, source)


def load_config(path=None):
    """Read and validate a TOML config file (the embedded default when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"], path) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text at byte {exc.start}"], path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax: {exc}"], path) from None
    return parse_config(data, source=path, base_dir=path.resolve().parent)


def display_value(dotted, value):
    """A value as the file would write it: durations as ``"5ms"``, everything else as is."""
    section, _, key = dotted.rpartition(".")
    field = SCHEMA.get(section, {}).get(key)
    return format_duration(value) if field is not None and field.kind == "duration" else value
