"""`cf.history()`: the history's records, typed and filtered, as a table or a DataFrame; and the
history's JSON with booleans that are booleans."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import carbonfast as cf
from carbonfast.cli import main
from carbonfast.record import DomainRecord, Record
from carbonfast.report.history import History
from tests.fakes.powercap import FakePowercap


def _add(path: Path, label: str, kind: str, started_at: str, estimated: bool = False) -> None:
    record = Record(
        kind=kind,  # type: ignore[arg-type]
        label=label,
        started_at=started_at,
        duration_s=1.5,
        energy_j=12.0,
        estimated=estimated,
        emissions_kg=2e-6,
        domains={"package-0": DomainRecord(12.0, "package", estimated, part="cpu")},
    )
    h = History(path)
    h.add(record)
    h.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite"
    _add(path, "train <b>", "window", "2025-06-01T10:00:00+00:00", estimated=True)
    _add(path, "train", "run", "2025-06-02T10:00:00+00:00")
    _add(path, "eval", "bench", "2025-06-03T10:00:00.500000+00:00")
    return path


def test_records_come_typed_newest_first(db: Path) -> None:
    records = cf.history(path=db)
    assert len(records) == 3
    assert all(isinstance(r, Record) for r in records)
    assert [r.label for r in records] == ["eval", "train", "train <b>"]
    assert [r.id for r in records] == [3, 2, 1]
    assert records[2].estimated is True and records[2].domains["package-0"].energy_j == 12.0
    assert [r.label for r in records[:2]] == ["eval", "train"]
    assert records[:2].path == str(db)


def test_filters_by_label_kind_time_and_limit(db: Path) -> None:
    assert [r.id for r in cf.history("train", path=db)] == [2, 1]
    assert [r.id for r in cf.history(kind="run", path=db)] == [2]
    assert [r.id for r in cf.history(since="2025-06-02", path=db)] == [3, 2]
    assert [r.id for r in cf.history(until="2025-06-02T10:00:00Z", path=db)] == [2, 1]
    since = datetime(2025, 6, 2, 12, tzinfo=timezone.utc)
    assert [r.id for r in cf.history(since=since, path=db)] == [3]
    # A time without a zone is UTC, as the history shows it.
    assert [r.id for r in cf.history(since=datetime(2025, 6, 3, 10, 0, 0), path=db)] == [3]
    assert [r.id for r in cf.history(since="2025-06-01", limit=1, path=db)] == [3]
    assert [r.id for r in cf.history(limit=2, path=db)] == [3, 2]


def test_bad_filters_name_what_is_accepted(db: Path) -> None:
    with pytest.raises(ValueError, match="kind='runs' is not valid"):
        cf.history(kind="runs", path=db)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="since='yesterday' is not valid; expected"):
        cf.history(since="yesterday", path=db)


def test_no_history_yet_gives_no_records(tmp_path: Path) -> None:
    records = cf.history(path=tmp_path / "none.sqlite")
    assert len(records) == 0
    assert "(no records)" in str(records)


def test_windows_closed_in_this_process_are_there_at_once(
    fake: FakePowercap, tmp_path: Path
) -> None:
    path = tmp_path / "h.sqlite"
    meter = cf.Meter(fake.root, history=path)
    for _ in range(3):
        with meter.measure("step"):
            fake.add("intel-rapl:0", 1_000_000)
    records = cf.history(path=path)
    assert [(r.kind, r.label, r.sums and r.sums["count"]) for r in records] == [
        ("windows", "step", 3)
    ]


def test_records_show_as_a_table(db: Path) -> None:
    records = cf.history(path=db)
    text = str(records)
    assert text.splitlines()[0].split() == [
        "id", "started", "(UTC)", "kind", "s", "J", "g", "CO2e", "label"
    ]  # fmt: skip
    assert "12~" in text.splitlines()[3]  # estimated
    html = records._repr_html_()
    assert html.count("<tr>") == 4 and "train &lt;b&gt;" in html and "<b>" not in html
    p: list[str] = []

    class Printer:
        def text(self, s: str) -> None:
            p.append(s)

    records._repr_pretty_(Printer(), False)
    assert p == [text]


def test_to_pandas_gives_one_row_per_record(db: Path) -> None:
    pytest.importorskip("pandas")
    frame = cf.history(path=db).to_pandas()
    assert list(frame["id"]) == [3, 2, 1]
    assert list(frame["estimated"]) == [False, False, True]
    assert frame["estimated"].dtype == bool
    assert list(frame["cpu_j"]) == [12.0] * 3
    assert str(frame["started_at"].dtype).startswith("datetime64")
    assert frame["started_at"].iloc[0].year == 2025


def test_to_pandas_without_pandas_says_how_to_get_it(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = cf.history(path=db)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        records.to_pandas()


def test_history_json_has_booleans(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--history", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["estimated"] for r in rows] == [False, False, True]
    assert all(isinstance(r["estimated"], bool) for r in rows)
