"""Command line: ``valkyrie-routing`` runs the server; options validate configs and query a server."""

import argparse
import asyncio
import sys

from valkyrie.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, validate_updates
from valkyrie.logs import configure_logging

__all__ = ["main"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def _parser():
    p = argparse.ArgumentParser(
        prog="valkyrie-routing",
        description="Valkyrie route server: exact and longest-prefix route lookups over HTTP, "
                    "served from Numba kernels over RCU snapshots.",
        epilog="With no command, runs the server headless on --config (default: the embedded config/default.toml).",
    )
    _server_options(p)
    p.add_argument("--validate-config", metavar="FILE", help="check FILE and exit: 0 when valid, 2 listing every problem")
    p.add_argument("--check-conflicts", metavar="FILE",
                   help="check FILE for clashing settings (ports, memory, CPUs, threads, pool sizes) and ports in use; 0 or 2")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # Same options after "serve" too; SUPPRESS keeps the subparser from resetting ones given before it.
    _server_options(sub.add_parser("serve", help="run the server (the default)",
                                   description="Run the server headless until SIGTERM/SIGINT."), default=argparse.SUPPRESS)
    _add_lookup(sub)
    from tui.cli import add_parser as add_console
    from valkyrie.diagnose import add_parser as add_diagnose
    from valkyrie.routes_cli import add_parser as add_routes

    add_console(sub).set_defaults(func=_console)
    add_diagnose(sub)
    add_routes(sub)
    return p


def _server_options(p, default=None):
    p.add_argument("--config", metavar="FILE", default=default,
                   help=f"TOML config to run with (default {DEFAULT_CONFIG_PATH})")
    p.add_argument("--host", default=default, help="override [server] host")
    p.add_argument("--port", type=int, default=default, help="override [server] port (0 picks a free port)")
    p.add_argument("--metrics-port", type=int, default=default,
                   help="override [observability.metrics] port (0 picks a free port)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=default,
                   help="override [logging] level")
    p.add_argument("--store", metavar="PATH", default=default,
                   help='override [routing] store_path, where API route changes are kept ("" keeps them in memory only)')


def _add_lookup(sub):
    p = sub.add_parser("lookup", help="resolve keys on a running server and print each next hop",
                       description="Resolve KEYs (addresses, names, exact keys) with POST /v1/route on a running server.",
                       epilog="Exit status: 0 every key routed, 1 some key has no route, 2 bad input or no server.")
    p.add_argument("keys", nargs="+", metavar="KEY", help="an address (198.51.100.7, 2001:db8::1), a name or an exact key")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server API URL (default %(default)s)")
    p.add_argument("--table", help="route table to resolve in (default: the server's)")
    p.add_argument("--json", action="store_true", help="print the server's JSON answer")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default %(default)s)")
    p.set_defaults(func=_lookup)


def _lookup(args):
    import json

    from valkyrie.http_client import Http, ServerUnreachable

    body = {"keys": args.keys} | ({"table": args.table} if args.table else {})
    try:
        status, raw = Http(timeout=args.timeout).request("POST", args.url.rstrip("/") + "/v1/route", body)
    except ServerUnreachable as exc:
        print(f"Error: no server at {args.url}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        print(f"Error: HTTP {status} {error.get('code', '')}: {error.get('message', raw[:200].decode('utf-8', errors='replace'))}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for r in answer["results"]:
            via = f" via {r['prefix']}" if r.get("prefix") else ""
            print(f"{r['key']}\t{r['next_hop'] or '-'}\t{r['match']}{via}")
    return EXIT_PROBLEM if any(r["match"] == "none" for r in answer["results"]) else EXIT_OK


def _console(args):
    from tui.cli import run

    return run(args)


def _overrides(args):
    out = {}
    if args.host is not None:
        out["server.host"] = args.host
    if args.port is not None:
        out["server.port"] = args.port
    if args.metrics_port is not None:
        out["observability.metrics.port"] = args.metrics_port
    if args.log_level is not None:
        out["logging.level"] = args.log_level
    if getattr(args, "store", None) is not None:
        out["routing.store_path"] = args.store
    return out


def _validate(path):
    from valkyrie.routes import RouteError, load_route_file

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # serve would refuse these at start-up, after the config passed: read them now (first problem per file).
    problems, routes = [], 0
    for route_file in config["routing.route_files"]:
        try:
            routes += len(load_route_file(route_file).routes)
        except RouteError as exc:
            problems.append(str(exc))
    if problems:
        print(f"Error: route files of {path} have problems:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    files = len(config["routing.route_files"])
    print(f"{path}: configuration is valid ({files} route file{'s' if files != 1 else ''}, {routes} routes)")
    return EXIT_OK


def _check(path):
    from valkyrie.conflicts import check_conflicts

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    notes = []
    problems = check_conflicts(config, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if problems:
        print(f"Error: {len(problems)} conflict(s) in {path}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: no conflicts")
    return EXIT_OK


def main(argv=None):
    """Entry point of the ``valkyrie-routing`` console script."""
    args = _parser().parse_args(argv)
    if args.validate_config:
        return _validate(args.validate_config)
    if args.check_conflicts:
        return _check(args.check_conflicts)
    if getattr(args, "func", None) is not None:
        return args.func(args)
    try:
        config = load_config(args.config)
        # Options are checked like file values (a --port equal to the metrics port is a conflict),
        # and pinned so a reload of the file keeps them.
        config = config.pin(**validate_updates(config, _overrides(args)))
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        configure_logging(config)
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from valkyrie.process import apply_process_settings

    # Before the heavy imports: a jemalloc re-exec starts over, and pinning covers every thread made later.
    apply_process_settings(config, argv if argv is not None else sys.argv[1:])
    from valkyrie.run import hold_early_signals, serve

    hold_early_signals()
    try:
        return asyncio.run(serve(config))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"Error: {exc.code}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
