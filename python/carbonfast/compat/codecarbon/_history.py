"""carbonfast's own history, which a tracker adds its run to where the user asked for one:
the drop-in otherwise writes CodeCarbon's files alone."""

from __future__ import annotations

from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _remember(report: dict[str, Any], label: str) -> None:
    """Records the run in carbonfast's history too, where the user asked for one
    (CARBONFAST_HISTORY, or `history` in a carbonfast config file); never by default."""
    from carbonfast.config import resolve

    try:
        settings = resolve(("history",), {})
        path = settings["history"]
        if path is None or "history" not in settings.origins:
            return
        from carbonfast.record import Record
        from carbonfast.report.history import History

        History(path).add(Record.from_dict({**report, "label": label}, "run"))
    except Exception as e:
        logger.warning(f"carbonfast's history was not written: {e}")
