"""Snapshot tests of the dashboard, fed a recording of a real server so every pixel is deterministic.

The recording (``tui/recordings/session.jsonl``, made by ``tui/recordings/record.py``) is
replayed through the same ``derive`` the live console uses; screenshots are compared with
committed baselines under ``tui/screenshots/baseline/`` (SVG, plus the plain text for a
readable diff). Regenerate after an intended change with ``TUI_SNAPSHOT_UPDATE=1``.
"""

import difflib
import io
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from tui.app import ConsoleApp
from tui.client import CraFamily, derive, flags_for, parse_metrics

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "tui" / "recordings" / "session.jsonl"
BASELINES = REPO / "tui" / "screenshots" / "baseline"
UPDATE = os.environ.get("TUI_SNAPSHOT_UPDATE") == "1"
WALL0 = 1_798_800_000.0  # 2027-01-01T12:00:00Z, so clocks on screen never depend on when the test runs


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Clock times render in UTC whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def recorded_readings():
    """Every poll of the recording as the console would have derived it."""
    records = [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]
    values = records[0]["status"].get("values", {})
    prev = last_grace = None
    readings = []
    for rec in records:
        status = {**rec["status"], "values": rec["status"].get("values", values)}
        scrape = parse_metrics(rec["metrics"], rec["at"])
        reading = derive(scrape, prev, health=rec["health"], status=status, tuning=rec["tuning"],
                         last_grace=last_grace, wall=WALL0 + rec["at"])
        prev, last_grace = scrape, reading.last_grace_s
        readings.append(reading)
    return readings


def flagged(reading):
    """The last reading pushed past every threshold of the guide, and a failed reload."""
    cra = dict(reading.cra)
    cra["ipv4"] = replace(cra.get("ipv4", CraFamily(None, None, None)), fragmentation=0.35)
    r = replace(reading, latency_us={**reading.latency_us, "0.99": 120.0, "0.999": 310.0}, throughput=420_000.0,
                collision_rate=0.14, collision_window="now", cra=cra, last_grace_s=0.071,
                last_reload={"result": "error", "at": WALL0, "trigger": "POST /admin/reload",
                             "error": 'Configuration validation failed in /app/config/production.toml:\n'
                                      '  - Performance budget "100us" exceeds requirement of 82µs'})
    return replace(r, flags=flags_for(r))


def screen_text(app):
    """The screen as plain text, the way a terminal would show it."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def capture(size, variant, check=None):
    readings = recorded_readings()
    app = ConsoleApp(poll=False)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        for reading in readings:
            app.feed(reading)
        if variant == "flagged":
            app.feed(flagged(readings[-1]))
        if variant == "down":
            app.feed_failure("cannot connect to http://127.0.0.1:8080/health: Connection refused", WALL0 + 60)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        if check is not None:
            check(app)
        return app.export_screenshot(title="Valkyrie console"), screen_text(app)


CASES = [("main_120x40", (120, 40), "live"), ("main_80x24", (80, 24), "live"),
         ("disconnected_120x40", (120, 40), "down"), ("flagged_120x40", (120, 40), "flagged"),
         ("flagged_80x24", (80, 24), "flagged")]


@pytest.mark.parametrize("name, size, variant", CASES, ids=[c[0] for c in CASES])
async def test_snapshot(name, size, variant, tmp_path):
    svg, text = await capture(size, variant)
    svg_path, text_path = BASELINES / f"{name}.svg", BASELINES / f"{name}.txt"
    if UPDATE or not svg_path.exists():
        BASELINES.mkdir(parents=True, exist_ok=True)
        svg_path.write_text(svg)
        text_path.write_text(text)
        if not UPDATE:
            pytest.fail(f"no baseline for {name}: wrote {svg_path}; review it and commit")
    expected_text = text_path.read_text()
    if text != expected_text:
        (tmp_path / f"{name}.svg").write_text(svg)
        diff = "\n".join(difflib.unified_diff(expected_text.splitlines(), text.splitlines(), "baseline", "now", lineterm=""))
        pytest.fail(f"{name} differs from its baseline (new SVG in {tmp_path}):\n{diff}")
    # Same text but other colours (a flag, greying) still counts as a change.
    if svg != svg_path.read_text():
        (tmp_path / f"{name}.svg").write_text(svg)
        pytest.fail(f"{name}: text matches but styles differ from {svg_path}; new SVG in {tmp_path}")


async def test_snapshot_is_deterministic():
    first, _ = await capture((80, 24), "live")
    second, _ = await capture((80, 24), "live")
    assert first == second


async def test_recorded_dashboard_shows_every_figure_the_issue_asks_for():
    def check(app):
        flagged_panels = {p.id for p in app.main.panels if p.has_class("-flagged")}
        assert {"latency", "traffic", "fit", "cra", "rcu", "config"} <= flagged_panels

    _, text = await capture((120, 40), "flagged", check)
    for needle in ("P50", "P90", "P99", "P99.9", "82µs", "throughput", "errors", "load", "capacity", "entries",
                   "collide", "probes", "ipv4", "ipv6", "name", "frag", "epoch", "pending", "grace", "reader",
                   "RSS", "tables", "file", "reload", "live", "fit_load_factor"):
        assert needle in text, needle


async def test_disconnected_greys_every_panel_and_keeps_the_data():
    def check(app):
        assert all(p.stale and p.has_class("-stale") for p in app.main.panels)
        assert app.main.query_one("#latency").reading is not None
        assert app.main.query_one("#status").has_class("-down")

    _, text = await capture((120, 40), "down", check)
    assert "DISCONNECTED" in text and "retrying every 1s" in text
