"""Logging set-up for the CLI entry points (libraries only ever call getLogger).

`CTTA_LOG_FORMAT=json` (or `log_format="json"`) writes one JSON object per line for log
shippers (Loki, Elasticsearch, CloudWatch); the default stays readable for people. The
formatter is ours, not python-json-logger: it is a dozen lines, fixes the key names that
dashboards rely on, and spares a dependency.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the `extra` fields, and
    `exception` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO", log_format: LogFormat | None = None) -> None:
    """Log to stderr at `level`; the format comes from the argument, else `CTTA_LOG_FORMAT`."""
    chosen = log_format or os.environ.get("CTTA_LOG_FORMAT", "text").strip().lower()
    if chosen not in ("text", "json"):
        raise ValueError(f"CTTA_LOG_FORMAT must be 'text' or 'json', not {chosen!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Request lines from eleven nodes drown what matters; errors still show.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
