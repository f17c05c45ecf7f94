"""Logging to stderr and an optional rotating file, as plain text or JSON lines.

Faults are logged at ERROR or WARNING with the message itself starting ``ERROR``
or ``WARN``, so ``grep -E "ERROR|WARN"`` finds them in either format.
"""

import json
import logging
import logging.handlers
import time
from pathlib import Path

__all__ = ["setup_logging", "configure_logging", "JsonFormatter"]

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose faults belong in the same log: aiohttp (request handling) and asyncio (lost task errors).
THIRD_PARTY = ("aiohttp", "asyncio")


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


def _file_handler(file, max_bytes, backups):
    try:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot open log file {file}: {exc.strerror or exc}") from None


def setup_logging(level="info", fmt="plain", file="", *, max_bytes=64 * 2**20, backups=5):
    """Route the ``valkyrie`` loggers (and aiohttp's and asyncio's warnings) to stderr and, when ``file`` is set, a rotating file.

    Raises ``ValueError`` naming the file when it cannot be opened; the previous handlers then stay.
    """
    # Open the new file before touching the old handlers, so a bad path changes nothing.
    handlers = [logging.StreamHandler()]
    if file:
        handlers.append(_file_handler(file, max_bytes, backups))
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN)
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger("valkyrie")
    for name in ("valkyrie", *THIRD_PARTY):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = False
    root.setLevel(level.upper())
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return root


def configure_logging(config):
    """``setup_logging`` from a config's ``[logging]`` section."""
    return setup_logging(config["logging.level"], config["logging.format"], config["logging.file"],
                         max_bytes=config["logging.file_max_size"], backups=config["logging.file_backups"])
