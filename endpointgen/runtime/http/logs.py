"""The `endpointgen` logger, whose records are written as JSON lines."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("endpointgen")


class JsonLines(logging.Formatter):
    """Each record as one JSON object: `time`, `level`, `logger`, `message` (and
    `traceback` when there is one), so log tools parse whole lines."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, dict):  # fields of their own (a webhook's delivery)
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging() -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLines())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
