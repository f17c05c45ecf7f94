"""``valkyrie-routing routes dump|restore|load``: back up and restore the route table, or push a route file, through the API.

- ``dump`` streams ``GET /v1/routes`` into a file (JSON: nodes, default route
  and routes, restorable; CSV: routes only). It writes beside the target and
  renames only once the whole stream arrived and parses, so a failed dump never
  leaves a truncated file that looks like a backup.
- ``restore`` makes the server's table equal to a dump: it fetches the current
  table, then sends only what differs (nodes, routes, the default route) with
  ``PUT /v1/routes`` and removes routes the dump does not have with
  ``DELETE /v1/routes``, in bounded batches. Each batch is all-or-nothing and
  durable once acknowledged, so a restore cut short is finished by running it
  again.
- ``load`` pushes a TOML or CSV route file (``valkyrie.routes`` loaders) with
  ``PUT``: it adds and replaces, never deletes.

Exit status: 0 done, 2 a bad file, a refused batch or no server (the message
says which, and what was already applied).
"""

import csv
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlencode

import orjson

from valkyrie.export import CSV_HEADER
from valkyrie.http_client import Http, ServerUnreachable
from valkyrie.routes import ExactRoute, RouteError, load_route_file, parse_node, parse_route

__all__ = ["add_parser", "Table", "read_dump", "CliError"]

EXIT_OK, EXIT_USAGE = 0, 2
TOKEN_ENV = "VALKYRIE_ADMIN_TOKEN"
_JSON_KEYS = {"epoch", "next", "default_route", "nodes", "routes"}


class CliError(Exception):
    """A problem to report on stderr with exit status 2."""


@dataclass
class Table:
    """A route table as the CLI compares it: nodes by id, routes by identity, the default route."""

    nodes: dict = field(default_factory=dict)  # id -> Node
    routes: dict = field(default_factory=dict)  # ("prefix" | "key", canonical text) -> next hop id
    default_route: str | None = None
    epoch: int | None = None


def _ident(route):
    # The parsed route's text is canonical (2001:DB8::/32 -> 2001:db8::/32), as the server writes it.
    return ("key" if isinstance(route, ExactRoute) else "prefix", route.text)


def _add_route(table, route, where, seen):
    ident = _ident(route)
    if ident in seen:
        raise CliError(f"{where}: repeats the route of {seen[ident]} ({route.text})")
    seen[ident] = where
    table.routes[ident] = route.next_hop


# ---- reading dumps -----------------------------------------------------------------------------


def read_dump(path):
    """A dump file (JSON from ``routes dump``, or its CSV form) as a ``Table``; ``CliError`` naming the entry on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    if not raw.strip():
        raise CliError(f"{path}: empty file; expected a dump from 'valkyrie-routing routes dump'")
    try:
        if raw.lstrip()[:1] in (b"{", b"["):
            return _table_from_json(orjson.loads(raw), str(path))
        return _table_from_csv(raw.decode("utf-8"), str(path))
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path}: malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except RouteError as exc:
        raise CliError(str(exc)) from None


def _table_from_json(doc, where):
    if not isinstance(doc, dict):
        raise CliError(f"{where}: expected a JSON object with 'nodes' and 'routes'")
    unknown = set(doc) - _JSON_KEYS
    if unknown:
        raise CliError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(_JSON_KEYS))}")
    if doc.get("next"):
        raise CliError(f"{where}: this is one page of a paged listing ('next' is set), not a whole table; "
                       "dump the whole table with 'valkyrie-routing routes dump'")
    if "routes" not in doc:
        raise CliError(f"{where}: no 'routes' list")
    table = Table(epoch=doc.get("epoch"))
    for name in ("nodes", "routes"):
        if not isinstance(doc.get(name, []), list):
            raise CliError(f"{where}: '{name}' must be a list")
    for i, obj in enumerate(doc.get("nodes", [])):
        node = parse_node(obj, f"{where}: nodes[{i}]")
        if node.id in table.nodes:
            raise CliError(f"{where}: nodes[{i}]: node {node.id!r} is listed twice")
        table.nodes[node.id] = node
    seen = {}
    for i, obj in enumerate(doc["routes"]):
        _add_route(table, parse_route(obj, f"{where}: routes[{i}]"), f"{where}: routes[{i}]", seen)
    default = doc.get("default_route")
    if default is not None and (not isinstance(default, str) or not default):
        raise CliError(f"{where}: default_route must be a node id string or null")
    table.default_route = default
    return table


def _table_from_csv(text, where):
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(rows, [])]
    if header != list(CSV_HEADER):
        raise CliError(f"{where}:1: header must be {','.join(CSV_HEADER)} (a CSV dump), got {','.join(header)!r}; "
                       "to push a route file use 'valkyrie-routing routes load'")
    table, seen = Table(), {}
    for row in rows:
        line = f"{where}:{rows.line_num}"
        if not row:
            continue
        if len(row) != 3 or row[0] not in ("prefix", "key"):
            raise CliError(f"{line}: expected 'prefix|key,route,next_hop', got {','.join(row)!r}")
        _add_route(table, parse_route({row[0]: row[1], "next_hop": row[2]}, line), line, seen)
    table.default_route = None
    return table


# ---- talking to the server ---------------------------------------------------------------------


def _error_text(status, raw):
    try:
        err = orjson.loads(raw).get("error", {})
        return f"HTTP {status} {err.get('code', '')}: {err.get('message', '')}"
    except (orjson.JSONDecodeError, AttributeError):
        return f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"


def fetch_table(http, url):
    """The server's whole table (``GET /v1/routes``) as a ``Table``."""
    try:
        status, raw = http.request("GET", f"{url}/v1/routes")
    except ServerUnreachable as exc:
        raise CliError(f"no server at {url}: {exc}") from None
    except (HTTPException, OSError) as exc:
        raise CliError(f"reading the current table from {url} failed: {exc}") from None
    if status != 200:
        raise CliError(f"reading the current table from {url}: {_error_text(status, raw)}")
    try:
        return _table_from_server(orjson.loads(raw), f"{url}/v1/routes")
    except (orjson.JSONDecodeError, RouteError, KeyError, TypeError, AttributeError) as exc:
        raise CliError(f"{url}/v1/routes answered something that is not a route table: {exc}") from None


def _table_from_server(doc, where):
    """The server's own listing: its texts are canonical already, so routes are taken as written (fast)."""
    table = Table(epoch=doc.get("epoch"), default_route=doc.get("default_route"))
    table.nodes = {n.id: n for n in (parse_node(obj, f"{where}: nodes[{i}]") for i, obj in enumerate(doc["nodes"]))}
    for entry in doc["routes"]:
        kind = "key" if "key" in entry else "prefix"
        table.routes[(kind, entry[kind])] = entry["next_hop"]
    return table


class Sender:
    """Sends batches in order, reports progress at most once a second, and stops at the first refused batch."""

    def __init__(self, http, url, total_batches, total_changes, *, out=sys.stderr, verb="restore"):
        self.http, self.url, self.out, self.verb = http, url, out, verb
        self.total, self.done = total_batches, 0
        self.changes, self.total_changes = 0, total_changes
        self._last = 0.0

    def send(self, method, body, what, count):
        """One batch; raises ``CliError`` saying what was applied when it is refused."""
        try:
            status, raw = self.http.request(method, f"{self.url}/v1/routes", body, admin=True)
        except (ServerUnreachable, HTTPException, OSError) as exc:
            status, raw = None, str(exc).encode()
        if status is None or not 200 <= status < 300:
            problem = _error_text(status, raw) if status else f"no answer: {raw.decode()}"
            hint = " (try a smaller --batch-size)" if status == 413 else ""
            raise CliError(
                f"{self.verb}: batch {self.done + 1} of {self.total} ({what}) failed: {problem}{hint}. "
                f"Batches 1-{self.done} were applied and are durable; nothing of batch {self.done + 1} was applied. "
                f"Run the command again once the cause is fixed.")
        self.done += 1
        self.changes += count
        now = time.monotonic()
        if now - self._last >= 1.0 or self.done == self.total:
            self._last = now
            print(f"{self.verb}: batch {self.done}/{self.total} applied, {self.changes}/{self.total_changes} "
                  "route changes", file=self.out)
        return orjson.loads(raw)


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def _apply(http, url, verb, nodes, puts, default_route, deletes, batch):
    """PUT nodes, PUT routes (``(ident, next hop)``), set the default route, DELETE routes (idents): bounded batches, in that order."""
    plan = ([("PUT", {"nodes": [n.as_dict() for n in c]}, f"{len(c)} nodes", 0) for c in _chunks(nodes, batch)]
            + [("PUT", {"routes": [{kind: text, "next_hop": hop} for (kind, text), hop in c]}, f"{len(c)} routes", len(c))
               for c in _chunks(puts, batch)]
            + ([("PUT", {"default_route": default_route}, "default route", 0)] if default_route else [])
            + [("DELETE", {"routes": [{kind: text} for kind, text in c]}, f"{len(c)} deletions", len(c))
               for c in _chunks(deletes, batch)])
    sender = Sender(http, url, len(plan), sum(step[3] for step in plan), verb=verb)
    epoch = None
    for method, body, what, count in plan:
        epoch = sender.send(method, body, what, count).get("epoch", epoch)
    return epoch


# ---- commands ----------------------------------------------------------------------------------


def _http(args):
    return Http(token=args.token or os.environ.get(TOKEN_ENV) or None, timeout=args.timeout)


def _dump(args):
    url = args.url.rstrip("/")
    query = {"format": args.format} | ({"prefix": args.prefix} if args.prefix else {})
    try:
        status, resp = _http(args).open(f"{url}/v1/routes?{urlencode(query)}")
    except ServerUnreachable as exc:
        raise CliError(f"no server at {url}: {exc}") from None
    with resp:
        if status != 200:
            raise CliError(f"dump from {url}: {_error_text(status, resp.read())}")
        epoch = resp.headers.get("X-Valkyrie-Epoch", "?")
        if args.output in (None, "-"):
            _copy(resp, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return EXIT_OK
        target = Path(args.output)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                size = _copy(resp, out)
                out.flush()
                os.fsync(out.fileno())
            count = _count_routes(tmp, args.format, url)
            # mkstemp makes the file 0600; a dump is an ordinary file, readable as the umask allows.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    print(f"dump: {count} routes at epoch {epoch} from {url} written to {target} ({size} bytes)", file=sys.stderr)
    return EXIT_OK


def _count_routes(path, fmt, url):
    """Routes in a dump just written; a dump that does not parse is not kept (the stream was cut short)."""
    try:
        with open(path, "rb") as fh:
            if fmt == "json":
                return len(orjson.loads(fh.read())["routes"])
            return sum(1 for _ in csv.reader(io.TextIOWrapper(fh, encoding="utf-8", newline=""))) - 1
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"dump from {url} did not parse, nothing was kept: {exc}") from None


def _copy(resp, out):
    size = 0
    try:
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            size += len(chunk)
    except (HTTPException, OSError) as exc:
        raise CliError(f"dump incomplete: the stream broke after {size} bytes ({exc!r}); nothing was kept") from None
    return size


def _restore(args):
    url = args.url.rstrip("/")
    want = read_dump(args.file)
    http = _http(args)
    have = fetch_table(http, url)
    nodes = [n for nid, n in want.nodes.items() if have.nodes.get(nid) != n]
    known = set(have.nodes) | set(want.nodes)
    puts = []
    for ident, hop in want.routes.items():
        if hop not in known:
            raise CliError(f"{args.file}: route {ident[1]} names next hop {hop!r}, which neither the file "
                           f"nor the server has; restore a JSON dump (it carries nodes), or load the nodes first "
                           f"with 'valkyrie-routing routes load NODES.csv'")
        if have.routes.get(ident) != hop:
            puts.append((ident, hop))
    default = want.default_route if want.default_route not in (None, have.default_route) else None
    if default is not None and default not in known:
        raise CliError(f"{args.file}: default_route {default!r} is a node neither the file nor the server has")
    deletes = [] if args.keep_extra else [ident for ident in have.routes if ident not in want.routes]
    print(f"restore: {args.file} has {len(want.routes)} routes; server at epoch {have.epoch} has {len(have.routes)}: "
          f"{len(nodes)} nodes and {len(puts)} routes to put, {len(deletes)} to delete"
          f"{', default route to set' if default else ''}", file=sys.stderr)
    if want.default_route is None and have.default_route is not None:
        print(f"restore: note: the dump has no default route; the server keeps {have.default_route!r} "
              "(the API cannot unset one)", file=sys.stderr)
    epoch = _apply(http, url, "restore", nodes, puts, default, deletes, args.batch_size)
    print(f"restore: done; the server's table matches {args.file}"
          f"{f' at epoch {epoch}' if epoch is not None else ' (nothing to change)'}", file=sys.stderr)
    return EXIT_OK


def _load(args):
    url = args.url.rstrip("/")
    try:
        rs = load_route_file(args.file)
    except RouteError as exc:
        raise CliError(str(exc)) from None
    if not (rs.nodes or rs.routes or rs.default_route):
        raise CliError(f"{args.file}: declares no nodes, routes or default route")
    print(f"load: {args.file}: {len(rs.nodes)} nodes, {len(rs.routes)} routes"
          f"{', a default route' if rs.default_route else ''}", file=sys.stderr)
    puts = [(_ident(r), r.next_hop) for r in rs.routes]
    epoch = _apply(_http(args), url, "load", rs.nodes, puts, rs.default_route, [], args.batch_size)
    print(f"load: done at epoch {epoch}", file=sys.stderr)
    return EXIT_OK


def _run(fn):
    def run(args):
        if getattr(args, "batch_size", 1) < 1:
            print("Error: --batch-size must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        try:
            return fn(args)
        except CliError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return run


def _common(p, *, writes):
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server API URL (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer (default %(default)s)")
    if writes:
        p.add_argument("--batch-size", type=int, default=1000, metavar="N",
                       help="routes (or nodes) per PUT/DELETE; each batch is all-or-nothing (default %(default)s)")
    p.add_argument("--token", help=f"admin bearer token for PUT/DELETE (default ${TOKEN_ENV})")


def add_parser(sub):
    """Add ``routes dump|restore|load`` to ``valkyrie-routing``'s subparsers."""
    p = sub.add_parser("routes", help="dump, restore or load route tables through a running server's API",
                       description="Back up and restore the route table, or push a route file, through a running "
                                   "server's API (GET, PUT and DELETE /v1/routes).",
                       epilog="Exit status: 0 done, 2 bad file, refused batch or no server.")
    acts = p.add_subparsers(dest="routes_command", metavar="ACTION", required=True)
    d = acts.add_parser("dump", help="write the whole table (or a --prefix of it) to a file",
                        description="Stream GET /v1/routes into FILE. JSON holds nodes, the default route and routes "
                                    "and is what 'routes restore' takes; CSV (kind,route,next_hop) holds routes only.")
    _common(d, writes=False)
    d.add_argument("--format", choices=("json", "csv"), default="json", help="dump format (default %(default)s)")
    d.add_argument("--prefix", help="only routes inside this CIDR, or starting with this name prefix")
    d.add_argument("-o", "--output", metavar="FILE", help="file to write (default: stdout); replaced only when complete")
    d.set_defaults(func=_run(_dump))
    r = acts.add_parser("restore", help="make the server's table equal to a dump",
                        description="Send what differs between FILE (a JSON or CSV dump) and the server's table: "
                                    "nodes and routes with PUT, routes FILE lacks with DELETE, in batches.")
    r.add_argument("file", metavar="FILE")
    _common(r, writes=True)
    r.add_argument("--keep-extra", action="store_true", help="do not delete routes the dump does not have")
    r.set_defaults(func=_run(_restore))
    lo = acts.add_parser("load", help="push a TOML or CSV route file through the API (adds and replaces)",
                         description="Read FILE with the route-file loaders (TOML, or CSV prefix,next_hop / key,next_hop / "
                                     "id,address,... nodes) and PUT it in batches. API changes persist in the route store.")
    lo.add_argument("file", metavar="FILE")
    _common(lo, writes=True)
    lo.set_defaults(func=_run(_load))
    return p
