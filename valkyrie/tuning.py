"""Live tuning: ``GET``/``PATCH /admin/tuning``, validated like the file, with provenance and revert.

``PATCH {"fit_load_factor": 0.6, "rcu_grace_period": "5ms"}`` applies values
live (a FIT change is a rebuilt table published as a new snapshot);
``PATCH {"fit_load_factor": null}`` reverts a key to the file's value.
"""

from valkyrie.config import ConfigError, display_value, validate_updates

__all__ = ["TUNABLE", "NotReady", "tuning_view", "apply_tuning"]

TUNABLE = {
    "fit_load_factor": "routing.lockfree.fit_load_factor",
    "fit_capacity": "routing.lockfree.fit_capacity",
    "rcu_grace_period": "routing.lockfree.rcu_grace_period",
    "rcu_max_pending_updates": "routing.lockfree.rcu_max_pending_updates",
    "rcu_aggressive_reclaim": "routing.lockfree.rcu_aggressive_reclaim",
    "route_cache_size": "routing.route_cache_size",
    "route_cache_ttl": "routing.route_cache_ttl",
    "cra_defrag_threshold": "routing.lockfree.cra_defrag_threshold",
}


class NotReady(RuntimeError):
    """Tuning asked for before the first snapshot is live."""


def tuning_view(state):
    """Every tunable value, where it comes from, and the file's value (and the live FIT's slots, once serving)."""
    out = {}
    for name, dotted in TUNABLE.items():
        out[name] = {
            "value": display_value(dotted, state.config[dotted]),
            "source": "live" if dotted in state.overrides else "file",
            "file_value": display_value(dotted, state.file_config[dotted]),
        }
    if state.ready:
        # The FIT grows past the configured slots to honour its load factor: say what the live table has.
        out["fit_capacity"]["slots_in_use"] = state.rcu.current.exact.capacity
    return out


async def apply_tuning(state, body):
    """Validate and apply a PATCH body; raises ``ConfigError`` listing every problem."""
    if not isinstance(body, dict) or not body:
        raise ConfigError(["body must be a non-empty JSON object of tunable values, e.g. {\"fit_load_factor\": 0.6}"])
    unknown = [k for k in body if k not in TUNABLE]
    if unknown:
        raise ConfigError([f"{k!r} is not live-tunable; tunable: {', '.join(TUNABLE)}" for k in unknown])
    if not state.ready:
        # A geometry change needs the live tables; one made during start-up could be lost to the first build.
        raise NotReady("route tables are not loaded yet; tune once GET /health answers 200")
    reverts = {TUNABLE[k]: state.file_config[TUNABLE[k]] for k, v in body.items() if v is None}
    updates = validate_updates(state.config, {TUNABLE[k]: v for k, v in body.items() if v is not None})
    values = {**reverts, **updates}
    await state.apply_live(values, source="PATCH /admin/tuning")
    for dotted in reverts:
        state.overrides.pop(dotted, None)
    for dotted, value in updates.items():
        state.overrides[dotted] = value
    return tuning_view(state)
