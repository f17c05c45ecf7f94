"""Logging to stderr and an optional rotating file, as plain text or JSON lines."""

import json
import logging
import logging.handlers
import time
from pathlib import Path

__all__ = ["setup_logging", "JsonFormatter"]

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when present)."""

    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level="info", fmt="plain", file=""):
    """Route the ``valkyrie`` loggers to stderr and, when ``file`` is set, a rotating file."""
    root = logging.getLogger("valkyrie")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN)
    handlers = [logging.StreamHandler()]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(file, maxBytes=64 * 2**20, backupCount=5, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return root
