"""The meter behind the trackers: one carbonfast meter shared by the trackers that ask for the
same, and the GPUs it measures."""

from __future__ import annotations

import os
import threading

from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measure import Meter

_meters: dict[tuple[Any, ...], Meter] = {}
_meters_lock = threading.Lock()
_MAX_METERS = 4


def _shared_meter(**options: Any) -> Meter:
    """A meter for these options, shared by the trackers that ask for the same (a meter is
    thread-safe and its windows may overlap): a tracker made per call, as track_emissions
    makes them, costs no discovery of the counters. The environment and working directory
    are part of the key, since the meter's settings come from them too; the few most recent
    meters are kept."""
    from carbonfast.config import working_directory
    from carbonfast.measure import Meter

    environment = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith("CARBONFAST_"))
    )
    key = (tuple(sorted(options.items())), environment, working_directory())
    with _meters_lock:
        meter = _meters.pop(key, None)
        if meter is None:
            meter = Meter(
                **options,
                # The drop-in writes CodeCarbon's files only; carbonfast's history where asked
                # (see _history).
                history="off",
                # As CodeCarbon's, a tracker measures what its machine has: it is often made on
                # one rank alone, where a job's meter would wait for the others to join.
                distributed=False,
            )
        _meters[key] = meter  # the most recent last
        while len(_meters) > _MAX_METERS:
            del _meters[next(iter(_meters))]
        return meter


def _gpu_indices(ids: Any) -> tuple[int, ...] | None:
    """gpu_ids as CUDA indices; None: every GPU. Ids that are not indices (UUIDs) are
    logged and every GPU is measured."""
    if ids is None or ids == []:
        return None
    items = ids.split(",") if isinstance(ids, str) else list(ids)
    try:
        indices = tuple(int(str(i).strip()) for i in items if str(i).strip())
    except ValueError:
        logger.warning(
            f'gpu_ids={ids!r}: carbonfast selects GPUs by index (e.g. [0, 2] or "0,2"); '
            "measuring every GPU"
        )
        return None
    return indices or None
