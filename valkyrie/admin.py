"""Admin access: the bearer-token check for state-changing endpoints, and the admin actions themselves."""

import asyncio
import hmac
import ipaddress
import os
from pathlib import Path

from valkyrie.cache import warm
from valkyrie.config import ConfigError
from valkyrie.http_errors import ApiError, parse_json, read_body
from valkyrie.maintenance import force_reclaim, write_heap_profile
from valkyrie.reload import reload_config
from valkyrie.routes import RouteError
from valkyrie.tuning import NotReady, apply_tuning, tuning_view

__all__ = ["load_admin_token", "is_loopback", "requires_token", "check_token", "add_admin_routes", "TOKEN_ENV"]

TOKEN_ENV = "VALKYRIE_ADMIN_TOKEN"


def load_admin_token(config):
    """The configured admin token (environment first, then ``[server] admin_token_file``), or None."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = config["server.admin_token_file"]
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read admin token file {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"admin token file {path} is empty")
    return token


def is_loopback(host):
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Lookups that use POST only to carry a batch of keys; they change nothing.
READ_ONLY_POSTS = frozenset({"/v1/route", "/v1/route/packed"})


def requires_token(request):
    """Whether ``request`` needs the admin token: every /admin endpoint, and every method but GET outside the lookups.

    Deny by default: an endpoint added later that changes state is protected without anyone remembering to.
    """
    if request.path.startswith("/admin/"):
        return True
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    return request.path not in READ_ONLY_POSTS


def check_token(request, token):
    """None when allowed, else ``(status, code, message)``: 401 without credentials, 403 with wrong ones."""
    if token is None:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return 401, "unauthorized", "this endpoint needs 'Authorization: Bearer <admin token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 403, "forbidden", "the admin token is wrong"
    return None


def add_admin_routes(app, state_key, json_response):
    """Register the admin endpoints on ``app``."""

    async def reload(request):
        st = request.app[state_key]
        result = await reload_config(st, "POST /admin/reload")
        if result["result"] != "ok":
            raise ApiError(422, "config_invalid", result["error"])
        return json_response(result)

    async def gc(request):
        loop = asyncio.get_running_loop()
        return json_response(await loop.run_in_executor(None, force_reclaim, request.app[state_key], "POST /admin/gc"))

    async def heap_dump(request):
        # A traced heap takes seconds to snapshot: off the event loop, so lookups keep flowing.
        loop = asyncio.get_running_loop()
        try:
            path = await loop.run_in_executor(None, write_heap_profile, request.app[state_key])
        except OSError as exc:
            raise ApiError(500, "heap_profile_failed", f"cannot write the heap profile: {exc}") from None
        return json_response({"path": str(path)})

    async def get_tuning(request):
        return json_response(tuning_view(request.app[state_key]))

    async def patch_tuning(request):
        st = request.app[state_key]
        body = parse_json(await read_body(request, st.config), "request body is empty; send a JSON object of tunables")
        try:
            view = await apply_tuning(st, body)
        except ConfigError as exc:
            raise ApiError(400, "invalid_tuning", "; ".join(exc.problems)) from None
        except NotReady as exc:
            raise ApiError(503, "not_ready", str(exc)) from None
        return json_response({"epoch": st.rcu.current.epoch if st.rcu.ready else 0, "tuning": view})

    async def cache_warmup(request):
        st = request.app[state_key]
        if not st.ready:
            raise ApiError(503, "not_ready", "route tables are not loaded yet")
        keys, source = _warmup_keys(await read_body(request, st.config), st), "body"
        if keys is None:
            # No body: replay the recent single lookups, most recent last so they stay cached longest.
            keys, source = list(dict.fromkeys(st.recent)), "recent"
        if st.cache.size == 0:
            raise ApiError(409, "cache_disabled", "the route cache is off (route_cache_size = 0); "
                                                   "PATCH /admin/tuning {\"route_cache_size\": 50000} first")
        try:
            result = warm(st.cache, st.rcu, keys)
        except RouteError as exc:
            raise ApiError(400, "invalid_key", str(exc)) from None
        return json_response({**result, "source": source, "entries": len(st.cache)})

    app.router.add_get("/admin/tuning", get_tuning)
    app.router.add_post("/admin/cache/warmup", cache_warmup)
    app.router.add_patch("/admin/tuning", patch_tuning)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/gc", gc)
    app.router.add_post("/admin/heap-dump", heap_dump)
    return app


def _warmup_keys(raw, st):
    """Keys from a ``{"keys": [...]}`` body, or None for an empty body (use the recent sample)."""
    if not raw.strip():
        return None
    body = parse_json(raw)
    if not isinstance(body, dict) or set(body) != {"keys"}:
        raise ApiError(400, "invalid_body", 'body must be {"keys": ["198.51.100.7", ...]}, or empty to replay '
                                            "recent lookups")
    keys = body["keys"]
    if not isinstance(keys, list) or not keys:
        raise ApiError(400, "invalid_body", f"'keys' must be a non-empty list of strings, got {keys!r:.60}")
    if len(keys) > st.max_keys:
        raise ApiError(413, "batch_too_large", f"'keys' has {len(keys)} entries; at most {st.max_keys} per request")
    return keys
