"""Durations, sizes and config loading: defaults, unit parsing, every problem reported."""

import pytest

from valkyrie.config import ConfigError, DEFAULT_CONFIG_PATH, load_config, parse_config
from valkyrie.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("5ms", 0.005), ("300s", 300.0), ("82us", 82e-6), ("82µs", 82e-6), ("1.5m", 90.0), ("2h", 7200.0), ("0s", 0.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad, fragment", [("-5ms", "negative"), ("5", "not a duration"), (5, "unit"), ("5 parsecs", "not a duration"), (True, "unit")])
def test_bad_durations_name_the_value(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_duration(bad)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (8.2e-05, "82us"), (0.005, "5ms"), (60.0, "60s"), (1e-7, "0.1us")])
def test_durations_are_shown_as_written_shortest(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, size", [("4GB", 4 * 10**9), ("2GiB", 2 * 2**30), ("512MB", 512 * 10**6), (1024, 1024), ("10", 10)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_embedded_default_config_is_valid():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg["server.port"] == 8080
    assert cfg["observability.metrics.port"] == 9090
    assert cfg["routing.route_files"][0].endswith("routes/example.toml")


def test_defaults_fill_missing_keys():
    cfg = parse_config({})
    assert cfg["routing.lockfree.fit_load_factor"] == 0.75
    assert cfg["routing.lockfree.rcu_grace_period"] == pytest.approx(0.005)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({
            "server": {"port": "eighty", "prot": 1},
            "routing": {"lockfree": {"fit_load_factor": 0.95, "fit_capacity": 1000, "rcu_grace_period": "-5ms"}},
            "performance": {"performance_budget": "100us"},
        })
    text = "\n".join(info.value.problems)
    assert "server.port: expected an integer" in text
    assert "unknown key 'prot' in [server] (did you mean 'port'?)" in text
    assert "fit_load_factor = 0.95 must be in (0.1, 0.9]" in text
    assert "fit_capacity = 1000 is not a power of two" in text
    assert "negative" in text
    assert 'Performance budget "100us" exceeds requirement of 82µs' in text


def test_port_conflict_is_named_as_the_guide_does():
    with pytest.raises(ConfigError, match="Port conflict between HTTP and metrics endpoint"):
        parse_config({"server": {"port": 9090}})


def test_unknown_section_suggests_the_right_one(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[routing.lockfre]\nfit_load_factor = 0.6\n")
    with pytest.raises(ConfigError, match="did you mean 'lockfree'"):
        load_config(path)


def test_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "broken.toml" in str(info.value) and "TOML syntax" in str(info.value)


def test_route_files_resolve_relative_to_the_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[routing]\nroute_files = ["r.csv"]\n')
    assert load_config(path)["routing.route_files"] == [str(tmp_path / "r.csv")]
