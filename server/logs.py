"""Logging set-up for the CLI entry points (libraries only ever call getLogger)."""

from __future__ import annotations

import logging


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Request lines from eleven nodes drown what matters; errors still show.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
