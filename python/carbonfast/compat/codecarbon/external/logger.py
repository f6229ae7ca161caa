"""The "codecarbon" logger, set up as CodeCarbon sets it up: its own handler on stderr with
lines such as `[codecarbon INFO @ 14:02:07] ...`, not propagated to the root logger, at the
level CODECARBON_LOG_LEVEL names (INFO by default) until a tracker's `log_level` sets it.

Each tracker sets the format again, as CodeCarbon's do: console (stream) handlers of the
"codecarbon" logger are replaced by this one; file handlers and handlers of other kinds that
you add are kept.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("codecarbon")

_LEVEL_NAMES = frozenset(
    {"CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET"}
)
_LEVEL_NUMBERS = frozenset({0, 10, 20, 30, 40, 50})


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (so that a redirected or
    captured stderr gets the lines)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def set_logger_format(custom_preamble: str | None = "") -> None:
    """`[codecarbon LEVEL @ HH:MM:SS][preamble] message` on stderr."""
    fmt = "[%(name)s %(levelname)s @ %(asctime)s]"
    if custom_preamble:
        fmt += f"[{custom_preamble}]"
    fmt += " %(message)s"
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    # Console handlers are replaced (ours, or CodeCarbon's own where both are imported); file
    # handlers and any other kind are the user's and stay.
    logger.handlers = [
        h
        for h in logger.handlers
        if isinstance(h, logging.FileHandler) or not isinstance(h, logging.StreamHandler)
    ]
    logger.addHandler(handler)


def set_logger_level(level: str | int | None = None) -> None:
    """Sets the level by name ("info", "WARNING") or number; an unknown one is logged as an
    error and changes nothing."""
    if level is None:
        env = {k.lower(): v for k, v in os.environ.items()}
        level = env.get("codecarbon_log_level", "INFO")
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        logger.error(f"Unknown log level: {level!r}. Doing nothing.")
        return
    if isinstance(level, int):
        if level not in _LEVEL_NUMBERS:
            logger.error(
                f"Unknown int log level: {level}. Doing nothing; use one of 0, 10, 20, 30, 40, "
                "50 (logging.DEBUG...logging.CRITICAL)."
            )
            return
        logger.setLevel(level)
        return
    name = level.strip().upper()
    if name not in _LEVEL_NAMES:
        logger.error(
            f"Unknown str log level: {level}. Doing nothing; use one of debug, info, warning, "
            "error, critical."
        )
        return
    logger.setLevel(name)


set_logger_format()
set_logger_level()
logger.propagate = False
