"""Log set-up: plain and JSON lines in a real file, library faults in the same file, a bad path changes nothing."""

import json
import logging

import pytest

from valkyrie.logs import THIRD_PARTY, setup_logging


@pytest.fixture
def restore_logging():
    """Put the loggers setup_logging touches back as they were."""
    names = ("valkyrie", *THIRD_PARTY)
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def test_plain_lines_carry_level_logger_and_message(tmp_path, restore_logging):
    path = tmp_path / "logs" / "valkyrie.log"
    setup_logging("info", "plain", str(path))
    logging.getLogger("valkyrie.hot.reload").error("ERROR hot.reload of x rejected")
    logging.getLogger("valkyrie.performance").debug("below the level")
    [line] = path.read_text().splitlines()
    assert line.endswith(" ERROR valkyrie.hot.reload: ERROR hot.reload of x rejected")


def test_json_lines_are_one_object_each(tmp_path, restore_logging):
    path = tmp_path / "valkyrie.log"
    setup_logging("debug", "json", str(path))
    logging.getLogger("valkyrie.performance").info("performance p50_us=%.1f", 3.25)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("valkyrie.server").exception("ERROR handling GET /x — ünïcode kept")
    first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert first["level"] == "INFO" and first["logger"] == "valkyrie.performance" and first["msg"] == "performance p50_us=3.2"
    assert first["ts"].endswith("Z")
    assert second["level"] == "ERROR" and "ünïcode" in second["msg"] and "RuntimeError: boom" in second["exc"]


def test_library_warnings_reach_the_same_file(tmp_path, restore_logging):
    path = tmp_path / "valkyrie.log"
    setup_logging("info", "plain", str(path))
    logging.getLogger("aiohttp.server").error("Error handling request")
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    logging.getLogger("aiohttp.access").info("noise below WARNING")
    lines = path.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "ERROR aiohttp.server: Error handling request", "ERROR asyncio: Task exception was never retrieved"]


def test_a_file_that_cannot_be_opened_changes_nothing(tmp_path, restore_logging):
    good = tmp_path / "good.log"
    setup_logging("info", "plain", str(good))
    blocker = tmp_path / "regular-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=f"cannot open log file {blocker}/x.log"):
        setup_logging("debug", "json", str(blocker / "x.log"))
    logging.getLogger("valkyrie.run").info("still here")
    logging.getLogger("valkyrie.run").debug("level unchanged too")
    assert good.read_text().splitlines()[-1].endswith("INFO valkyrie.run: still here")
