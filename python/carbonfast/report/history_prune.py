"""How many runs and benchmarks the history keeps: each of these kinds is bounded on its own
(a setting each), the oldest pruned as new ones come in.

Windows are bounded apart (a label's windows are one row; kept ones are pruned past
MAX_ROWS), and tasks come with their runs. A run is a few kB, its trace up to some tens, so
that without a bound a project's history grows with every command ever measured.

A distributed job's records of one kind (one per rank, and the whole job's) count as one and
go together: `history --job` adds a job's parts up, and a job with some ranks pruned would
add up to a wrong, smaller figure.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping

# Each bounded kind (record.py's KINDS) and the setting that bounds it.
BOUNDED: dict[str, str] = {"run": "history_max_runs", "bench": "history_max_benches"}

# A record's unit of pruning: its job where it has one, else itself.
_UNIT = "CASE WHEN job_id IS NULL THEN 'id:' || id ELSE 'job:' || job_id END"


def bounds() -> dict[str, int]:
    """The most records of each bounded kind the history keeps, as the settings say."""
    from carbonfast.config import resolve

    settings = resolve(tuple(BOUNDED.values()), {})
    return {kind: int(settings[name]) for kind, name in BOUNDED.items()}


def prune_kinds(db: sqlite3.Connection, kinds: set[str], keep: Mapping[str, int]) -> int:
    """Deletes, for each of `kinds` that `keep` bounds, its oldest records past the bound (a
    job's counting once, all of them going together); returns how many went. Runs inside
    the caller's transaction, so that a record and the pruning it brings land together."""
    gone = 0
    for kind in sorted(kinds & keep.keys()):
        cur = db.execute(
            f"DELETE FROM runs WHERE kind = ?1 AND {_UNIT} IN ("
            f"SELECT {_UNIT} AS unit FROM runs WHERE kind = ?1 GROUP BY unit "
            "ORDER BY MAX(id) DESC LIMIT -1 OFFSET ?2)",
            (kind, keep[kind]),
        )
        gone += cur.rowcount
    return gone
