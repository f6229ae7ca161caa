"""carbonfast's own history, which a tracker adds its run to where the user asked for one:
the drop-in otherwise writes CodeCarbon's files alone."""

from __future__ import annotations

import dataclasses

from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.record import Record


def _remember(report: Record, label: str) -> None:
    """Records the run in carbonfast's history too, where the user asked for one
    (CARBONFAST_HISTORY, or `history` in a carbonfast config file); never by default."""
    from carbonfast.config import resolve

    try:
        settings = resolve(("history",), {})
        path = settings["history"]
        if path is None or "history" not in settings.origins:
            return
        from carbonfast.report.history import History

        History(path).add(dataclasses.replace(report, label=label, kind="run"))
    except Exception as e:
        logger.warning(f"carbonfast's history was not written: {e}")
