"""``--check-conflicts``: settings that are each valid but clash with each other or with this machine."""

import errno
import socket

from valkyrie.system import usable_cpus

__all__ = ["check_conflicts"]


def _bind_problem(host, port):
    """Why ``host:port`` cannot be bound here, or None (port 0 always can)."""
    if port == 0:
        return None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use on this machine"
            return f"cannot be bound: {exc.strerror}"
    return None


def _valkyrie_answers(host, port, path):
    """Whether a Valkyrie server answers on ``host:port`` (``path``: /health, or the metrics path)."""
    from valkyrie.http_client import Http, ServerUnreachable

    host = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("", "0.0.0.0") else host)
    try:
        status, body = Http(timeout=1.0).get(f"http://{host}:{port}{path}")
    except ServerUnreachable:
        return False
    return status in (200, 503) and (b'"status"' in body and b'"epoch"' in body or b"valkyrie_" in body
                                     or b'"starting"' in body)


def check_conflicts(config, *, probe_ports=True, notes=None):
    """Every conflict in ``config`` as a message (empty when there is none).

    A port held by a Valkyrie server (this config's own, most likely) is not a conflict: it is
    added to ``notes`` when a list is given.
    """
    problems = []
    http, metrics = config["server.port"], config["observability.metrics.port"]
    if config["observability.metrics.enable"] and http == metrics and http != 0:
        problems.append("Port conflict between HTTP and metrics endpoint")
    cpus = usable_cpus()
    missing = sorted(set(config["cpu_cores"]) - set(cpus))
    if missing:
        problems.append(f"cpu_cores names CPU(s) {missing} but this machine offers {cpus}")
    # The guide sizes worker threads at 2x the cores; beyond 8 per CPU threads only contend.
    per_cpu = 8
    for key in ("server.worker_threads", "server.blocking_threads"):
        if config[key] > per_cpu * len(cpus):
            problems.append(f"{key} = {config[key]} is more than {per_cpu} per CPU ({len(cpus)} CPUs here, "
                            f"at most {per_cpu * len(cpus)}): the extra threads only contend")
    pool, concurrent = config["routing.connection_pool_size"], config["routing.max_concurrent_requests"]
    if pool > concurrent:
        problems.append(f"routing.connection_pool_size = {pool} exceeds routing.max_concurrent_requests = {concurrent}: "
                        "requests beyond the admission limit can never use the extra pool")
    if config["server.max_connections"] < pool:
        problems.append(f"server.max_connections = {config['server.max_connections']} is below "
                        f"routing.connection_pool_size = {pool}: the pool can never fill")
    if probe_ports:
        for what, host, port in (("HTTP", config["server.host"], http), ("metrics", config["observability.metrics.host"], metrics)):
            if config["observability.metrics.enable"] or what == "HTTP":
                if (problem := _bind_problem(host, port)) is None:
                    continue
                path = "/health" if what == "HTTP" else config["observability.metrics.path"]
                if problem.startswith("is already in use") and _valkyrie_answers(host, port, path):
                    if notes is not None:
                        notes.append(f"{what} port {host}:{port} is served by a running Valkyrie server "
                                     "(not a conflict if it runs this config)")
                    continue
                problems.append(f"{what} port {host}:{port} {problem}")
    return problems
