"""``--check-conflicts``: settings that are each valid but clash with each other or with this machine."""

import socket

from valkyrie.system import usable_cpus

__all__ = ["check_conflicts"]


def _port_in_use(host, port):
    if port == 0:
        return False
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def check_conflicts(config, *, probe_ports=True):
    """Every conflict in ``config`` as a message (empty when there is none)."""
    problems = []
    http, metrics = config["server.port"], config["observability.metrics.port"]
    if config["observability.metrics.enable"] and http == metrics and http != 0:
        problems.append("Port conflict between HTTP and metrics endpoint")
    cpus = usable_cpus()
    missing = sorted(set(config["cpu_cores"]) - set(cpus))
    if missing:
        problems.append(f"cpu_cores names CPU(s) {missing} but this machine offers {cpus}")
    limit = 2 * len(cpus)
    for key in ("server.worker_threads", "server.blocking_threads"):
        if config[key] > 4 * limit:
            problems.append(f"{key} = {config[key]} is more than 4x the {limit} threads 2x{len(cpus)} CPUs can run")
    pool, concurrent = config["routing.connection_pool_size"], config["routing.max_concurrent_requests"]
    if pool > concurrent:
        problems.append(f"routing.connection_pool_size = {pool} exceeds routing.max_concurrent_requests = {concurrent}: "
                        "requests beyond the admission limit can never use the extra pool")
    if config["server.max_connections"] < pool:
        problems.append(f"server.max_connections = {config['server.max_connections']} is below "
                        f"routing.connection_pool_size = {pool}: the pool can never fill")
    if probe_ports:
        for what, host, port in (("HTTP", config["server.host"], http), ("metrics", config["observability.metrics.host"], metrics)):
            if _port_in_use(host, port):
                problems.append(f"{what} port {host}:{port} is already in use on this machine")
    return problems
