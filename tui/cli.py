"""``valkyrie-routing console``: attach the operator console to a server, or run one and attach (``--serve``).

Wire into ``valkyrie.cli`` with ``tui.cli.add_parser(sub)`` and, for ``args.command == "console"``,
``return tui.cli.run(args)``. Also runs alone: ``python -m tui --serve``.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run", "main"]

TOKEN_ENV = "VALKYRIE_ADMIN_TOKEN"


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server API URL (default %(default)s)")
    p.add_argument("--metrics-url", metavar="URL",
                   help="Prometheus metrics URL (default: the server's [observability.metrics] port on the --url host)")
    p.add_argument("--token", help=f"admin bearer token for reload, tuning, GC and heap dumps (default ${TOKEN_ENV})")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="poll period (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1.5, metavar="SECONDS",
                   help="a poll with no answer within this time shows the server as disconnected (default %(default)s)")
    p.add_argument("--serve", action="store_true",
                   help="start a server as a child process on free loopback ports, attach to it, stop it on exit")
    p.add_argument("--config", dest="console_config", metavar="FILE",
                   help="with --serve: the config the child server runs on (default: the embedded config)")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``console`` subcommand to ``valkyrie-routing``'s subparsers."""
    return _configure(subparsers.add_parser(
        "console", help="the operator console (attach to a running server, or --serve one)",
        description="Live latency, throughput, FIT/CRA/RCU, memory and config of a Valkyrie server, "
                    "with reload, tuning, GC, heap dump and cache warm-up controls."))


def run(args: argparse.Namespace) -> int:
    """Run the console for parsed ``args``; returns the exit status."""
    from tui.app import ConsoleApp
    from tui.client import ValkyrieClient
    from tui.serve import ServedServer, ServeError

    if args.interval <= 0 or args.timeout <= 0:
        print("Error: --interval and --timeout must be positive", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    served = None
    url, metrics_url, note = args.url, args.metrics_url, None
    if args.serve:
        config = getattr(args, "console_config", None) or getattr(args, "config", None)
        served = ServedServer(config, token=token)
        try:
            served.start()
        except ServeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        url, metrics_url = served.url, served.metrics_url
        note = f"Serving {config or 'the embedded config'} as pid {served.proc.pid}; log {served.log_path}"
    try:
        client = ValkyrieClient(url, metrics_url, token=token, poll_timeout=args.timeout)
        app = ConsoleApp(client, interval=args.interval, note=note)
        app.run()
        return app.return_code or 0
    finally:
        if served is not None:
            served.stop()
            print(f"stopped the server; its log is {served.log_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m tui``), same options as ``valkyrie-routing console``."""
    return run(_configure(argparse.ArgumentParser(prog="python -m tui")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
