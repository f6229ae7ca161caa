"""What `run` writes besides its summary: the outputs it checks before the command starts, the
CSV row, the history (which another process may hold) and the power trace kept there."""

from __future__ import annotations

import argparse
from typing import Any

from carbonfast.cli.messages import warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.report.record import Record


def append_csv(args: argparse.Namespace, record: Record, cpu_seconds: float) -> None:
    from carbonfast.report import emissions_csv

    row = emissions_csv.row(record, cpu_seconds=cpu_seconds)
    emissions_csv.append(args.csv, row)


def check_outputs(args: argparse.Namespace) -> None:
    """Before the command starts: every output can be written where it was asked for (see
    report.files.check_writable); an existing CSV, which a run appends to, is only opened for
    appending."""
    from carbonfast.report.files import check_writable

    for flag, path in (("--json", args.json), ("--csv", args.csv), ("--html", args.html)):
        if path is not None:
            check_writable(path, flag, append=flag == "--csv")


# How long `run` waits for a history another process holds: before the command, a glance
# (the command is not kept waiting); after it, a while, then a warning naming the file.
HISTORY_CHECK_S = 0.4
HISTORY_WAIT_S = 10.0


def _locked(e: BaseException) -> bool:
    import sqlite3

    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def usable_history(path: str | None) -> str | None:
    """The history, if it can be written: otherwise a warning, and the run goes on without.
    One held by another process is not waited for: the run is recorded after the command if
    the history is free by then."""
    if path is None:
        return None
    from carbonfast.report.history import History

    history = None
    try:
        history = History(path, timeout=HISTORY_CHECK_S, say=warn)
        history.check()
    except Exception as e:
        if _locked(e):
            warn(
                f"the history {path} is locked by another process; the command runs now, and "
                f"is recorded after it if the history is free within {HISTORY_WAIT_S:g} s"
            )
            return path
        warn(f"the history {path} cannot be used ({e}); this run is not recorded")
        return None
    finally:
        if history is not None:
            history.close()
    return path


def record_run(path: str, record: Record, trace: dict[str, Any] | None) -> int:
    """Adds the run to the history, waiting at most about HISTORY_WAIT_S for another
    process's lock."""
    from carbonfast.report.history import History

    history = None
    try:
        history = History(path, timeout=HISTORY_WAIT_S, say=warn)
        return history.add(record, trace)
    except Exception as e:
        if _locked(e):
            raise ValueError(
                f"the history {path} is still locked by another process after "
                f"{HISTORY_WAIT_S:g} s; this run is not recorded there"
            ) from None
        raise
    finally:
        if history is not None:
            history.close()


# A stored trace keeps at most this many points: enough for a plot, small in the history.
TRACE_POINTS = 1000


def trace_dict(meter: Any, m: Any) -> dict[str, Any] | None:
    """The samples inside the window, downsampled, as plain lists (no numpy needed).

    A counter that refreshes in steps is traced between its timestamped refreshes (the core
    interpolates it); where that is not known yet (before the first refresh it placed, after
    the last one seen) a sample is unknown (NaN). Such samples at either end are left out, and a
    power that nothing measured inside is None, never 0."""
    from array import array

    data, rows, width = meter.native.trace()
    table = array("d")
    table.frombytes(data[: rows * width * 8])
    t0, t1 = m.start_ns * 1e-9, (m.end_ns or m.start_ns) * 1e-9
    keep = [r for r in range(rows) if t0 <= table[r * width] <= t1]

    def known(r: int) -> bool:
        return all(v == v for v in table[r * width + 1 : (r + 1) * width])  # NaN != NaN

    first = next((k for k, r in enumerate(keep) if known(r)), len(keep))
    last = next((k for k in range(len(keep) - 1, -1, -1) if known(keep[k])), -1)
    keep = keep[first : last + 1]
    if len(keep) < 2:
        return None
    keep = keep[:: max(1, len(keep) // TRACE_POINTS)]
    t = [table[r * width] for r in keep]
    power: dict[str, list[float | None]] = {}
    w = m.window()
    for col, (d, stalled, counted) in enumerate(
        zip(meter.all_domains, w.stalled, w.counted, strict=True), start=1
    ):
        if d.standby and not counted:
            continue  # an estimate that did not stand in for frozen counters: not reported
        if stalled:  # a counter that never moved: unknown, never 0 W
            power[d.name] = [None] * len(keep)
            continue
        e = [table[r * width + col] for r in keep]
        p = [(e[k] - e[k - 1]) / (t[k] - t[k - 1]) for k in range(1, len(e))]
        first_point: list[float | None] = [None]  # no power before the first sample
        power[d.name] = first_point + [x if x == x else None for x in p]
    return {"t_s": t, "power_w": power}
