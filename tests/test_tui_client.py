"""The console's pure parts: metrics parsing, rates across polls, the guide's thresholds, formatting, input checks."""

import pytest

from tui.client import (BUDGET_US, Reading, ServerError, Unreachable, ValkyrieClient, default_metrics_url, derive,
                        flags_for, parse_metrics)
from tui.format import fmt_age, fmt_bytes, fmt_count, fmt_pct, fmt_rate, fmt_seconds, fmt_us
from tui.tuning import parse_input
from tui.widgets.config import reload_summary, shorten
from tui.widgets.graph import GUTTER, chart_lines


def page(requests=1000.0, errors=0.0, p99=30e-6, count=100, collisions=10.0, operations=1000.0, frag=0.1,
         grace_sum=0.01, grace_count=2.0, lookups=10.0, lookup_errors=0.0):
    """A /metrics page with the series the console reads."""
    return f"""# TYPE valkyrie_routing_request_duration_window_seconds summary
valkyrie_routing_request_duration_window_seconds{{quantile="0.5"}} {p99 / 3}
valkyrie_routing_request_duration_window_seconds{{quantile="0.9"}} {p99 / 2}
valkyrie_routing_request_duration_window_seconds{{quantile="0.99"}} {p99}
valkyrie_routing_request_duration_window_seconds{{quantile="0.999"}} {p99 * 2}
valkyrie_routing_request_duration_window_seconds_count {count}
valkyrie_routing_request_duration_window_seconds_sum 0.0
# TYPE valkyrie_routing_requests_total counter
valkyrie_routing_requests_total {requests}
# TYPE valkyrie_routing_errors_total counter
valkyrie_routing_errors_total{{code="no_route"}} {errors}
# TYPE valkyrie_http_requests_total counter
valkyrie_http_requests_total{{endpoint="/v1/route/{{key}}",status="200"}} {lookups}
valkyrie_http_requests_total{{endpoint="/v1/route/{{key}}",status="404"}} {lookup_errors}
valkyrie_http_requests_total{{endpoint="/health",status="200"}} 999
# TYPE valkyrie_fit_collisions_total counter
valkyrie_fit_collisions_total {collisions}
# TYPE valkyrie_fit_operations_total counter
valkyrie_fit_operations_total {operations}
# TYPE valkyrie_cra_fragmentation_ratio gauge
valkyrie_cra_fragmentation_ratio{{family="ipv4"}} {frag}
valkyrie_cra_fragmentation_ratio{{family="name"}} 0.0
# TYPE valkyrie_rcu_grace_period_seconds histogram
valkyrie_rcu_grace_period_seconds_bucket{{le="+Inf"}} {grace_count}
valkyrie_rcu_grace_period_seconds_sum {grace_sum}
valkyrie_rcu_grace_period_seconds_count {grace_count}
"""


def test_parse_metrics_keys_samples_by_name_and_labels():
    s = parse_metrics(page(), 5.0)
    assert s.get("valkyrie_routing_requests_total") == 1000.0
    assert s.get("valkyrie_cra_fragmentation_ratio", family="ipv4") == pytest.approx(0.1)
    assert s.by("valkyrie_cra_fragmentation_ratio", "family") == {"ipv4": pytest.approx(0.1), "name": 0.0}
    assert s.get("missing") is None and s.total("missing") is None


def test_rates_come_from_two_polls():
    a = parse_metrics(page(requests=1000, errors=1, lookups=10, lookup_errors=0), 10.0)
    b = parse_metrics(page(requests=3000, errors=5, lookups=18, lookup_errors=2), 12.0)
    first, second = derive(a, None), derive(b, a)
    assert first.throughput is None and first.errors_per_s is None
    assert second.throughput == 1000.0
    assert second.errors_per_s == 2.0
    assert second.error_ratio == pytest.approx(2 / 10)  # /health polls are not lookups
    assert second.top_error == "no_route ×4"


def test_counter_reset_after_restart_gives_no_rate():
    a = parse_metrics(page(requests=50_000), 10.0)
    b = parse_metrics(page(requests=10), 11.0)
    assert derive(b, a).throughput is None


def test_idle_window_shows_unknown_latency_not_zero():
    r = derive(parse_metrics(page(count=0, p99=0.0), 1.0), None)
    assert r.latency_us == {"0.5": None, "0.9": None, "0.99": None, "0.999": None}


@pytest.mark.parametrize("kwargs_prev, kwargs_now, expected", [
    # Guide's formula (cumulative) on the first poll.
    ({}, None, 0.01),
    # Interval rate once both polls saw operations.
    ({"collisions": 10, "operations": 1000}, {"collisions": 60, "operations": 1100}, 0.5),
    # No operations in the interval: fall back to the cumulative ratio.
    ({"collisions": 10, "operations": 1000}, {"collisions": 10, "operations": 1000}, 0.01),
])
def test_collision_rate(kwargs_prev, kwargs_now, expected):
    a = parse_metrics(page(**kwargs_prev), 1.0)
    r = derive(a, None) if kwargs_now is None else derive(parse_metrics(page(**kwargs_now), 2.0), a)
    assert r.collision_rate == pytest.approx(expected)


def test_last_grace_period_is_the_mean_of_the_latest_interval():
    a = parse_metrics(page(grace_sum=0.010, grace_count=2), 1.0)
    b = parse_metrics(page(grace_sum=0.130, grace_count=3), 2.0)
    c = parse_metrics(page(grace_sum=0.130, grace_count=3), 3.0)
    assert derive(a, None).last_grace_s == pytest.approx(0.005)
    rb = derive(b, a)
    assert rb.last_grace_s == pytest.approx(0.120)
    # Nothing reclaimed since: keep showing the last one.
    assert derive(c, b, last_grace=rb.last_grace_s).last_grace_s == pytest.approx(0.120)


# (reading fields, expected flags): each of the guide's thresholds, on both sides.
FLAG_CASES = [
    ({"latency_us": {"0.99": BUDGET_US + 1}}, {"p99"}),
    ({"latency_us": {"0.99": BUDGET_US}}, set()),
    ({"throughput": 500_000.0}, {"throughput"}),
    ({"throughput": 0.0}, set()),  # idle server: no load, no flag
    ({"throughput": 2_000_000.0}, set()),
    ({"collision_rate": 0.11}, {"collisions"}),
    ({"collision_rate": 0.10}, set()),
    ({"last_grace_s": 0.051}, {"grace"}),
    ({"last_grace_s": 0.050}, set()),
]


@pytest.mark.parametrize("fields, expected", FLAG_CASES)
def test_flags_follow_the_guide(fields, expected):
    assert set(flags_for(Reading(at=0, wall=0, **fields))) == expected


def test_fragmentation_flag_names_the_arena():
    r = derive(parse_metrics(page(frag=0.31), 1.0), None)
    assert {"fragmentation", "fragmentation:ipv4"} <= r.flags


@pytest.mark.parametrize("fn, value, text", [
    (fmt_us, 45.25, "45.2µs"), (fmt_us, 82.0, "82µs"), (fmt_us, 1520.0, "1.52ms"), (fmt_us, None, "—"),
    (fmt_seconds, 0.0052, "5.2ms"), (fmt_seconds, 0.05, "50ms"), (fmt_seconds, 2e-5, "20µs"),
    (fmt_count, 1_250_000, "1.25M"), (fmt_rate, 999.0, "999/s"), (fmt_bytes, 3 * 2**20, "3.0MiB"),
    (fmt_pct, 0.1234, "12.3%"), (fmt_age, 3725, "1h02m"), (fmt_age, 75, "1m15s"),
])
def test_formatting(fn, value, text):
    assert fn(value) == text


@pytest.mark.parametrize("name, text, value", [
    ("fit_load_factor", "0.6", 0.6), ("rcu_grace_period", "5ms", "5ms"), ("rcu_aggressive_reclaim", "on", True),
    ("fit_capacity", "131072", 131072), ("route_cache_ttl", "300s", "300s"),
])
def test_tunable_input_accepted(name, text, value):
    assert parse_input(name, text) == value


@pytest.mark.parametrize("name, text, message", [
    ("fit_load_factor", "0.95", "must be in (0.1, 0.9]"), ("fit_load_factor", "lots", "is not a number"),
    ("rcu_grace_period", "5", "is not a duration"), ("fit_capacity", "1000", "not a power of two"),
    ("performance_budget", "75us", "not live-tunable"), ("fit_load_factor", "", "type a value"),
])
def test_tunable_input_rejected_with_the_servers_wording(name, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_input(name, text)


def test_reload_summary_and_shorten():
    assert reload_summary(None) == ("none yet", False, "")
    text, failed, note = reload_summary({"result": "error", "at": 0, "error": "Configuration validation failed in x:\n - y"})
    assert failed and text.startswith("failed") and note == "y"
    _, failed, note = reload_summary({"result": "ok", "at": 0, "changed": ["a.b"], "applied": ["a.b"],
                                      "restart_required": [], "trigger": "POST /admin/reload"})
    assert not failed and note == "1 applied · API"
    assert shorten("/very/long/path/to/config/production.toml", 24) == "…/config/production.toml"
    assert len(shorten("/very/long/path/to/config/production.toml", 20)) <= 20


def test_chart_draws_the_budget_line_and_marks_bars_over_it():
    lines = chart_lines([10.0, 100.0], width=4, height=4, budget=BUDGET_US)
    plain = [line.plain for line in lines]
    assert all(len(p) == GUTTER + 4 for p in plain)
    budget_row = next(p for p in plain if "82µs" in p)
    assert budget_row.endswith("┄┄" + budget_row[-2:]) and "┄" in budget_row
    assert plain[-1][-1] == "█"  # the 100µs bar reaches the bottom row


def test_default_metrics_url():
    assert default_metrics_url("http://10.0.0.5:8080") == "http://10.0.0.5:9090/metrics"
    assert default_metrics_url("http://[::1]:8080", 9191, "/m") == "http://[::1]:9191/m"


async def test_unreachable_server_raises_unreachable_quickly():
    client = ValkyrieClient("http://127.0.0.1:9", "http://127.0.0.1:9/metrics", poll_timeout=0.5)
    try:
        with pytest.raises(Unreachable):
            await client.poll()
    finally:
        await client.close()


def test_server_error_carries_the_servers_message():
    from tui.client import _server_error

    err = _server_error(400, {"error": {"code": "invalid_tuning", "message": "fit_load_factor = 2 must be in (0.1, 0.9]"}})
    assert (err.status, err.code, err.message) == (400, "invalid_tuning", "fit_load_factor = 2 must be in (0.1, 0.9]")
    assert isinstance(err, ServerError)
