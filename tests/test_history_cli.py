"""`carbonfast history` in the terminal: its kinds are the ones --kind takes, each record one
line whatever its label holds, its marks explained, a label's spread of windows shown, and
the emissions repriced at a place asked for on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbonfast.carbon import emissions_kg
from carbonfast.carbon.intensity import by_country
from carbonfast.cli import main
from carbonfast.record import KINDS, Record
from carbonfast.report.history import History
from carbonfast.report.window_sums import WindowSums

STARTED = "2025-06-01T10:00:00+00:00"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "h.sqlite"
    h = History(path)
    h.add(
        Record(
            kind="run",
            started_at=STARTED,
            duration_s=2.0,
            energy_j=3.6e6,  # 1 kWh
            estimated=True,
            emissions_kg=0.4,
            intensity_g_per_kwh=400.0,
            pue=1.0,
            command=["python", "-c", "print(1)\nprint(2)\x1b[2J"],
        )
    )
    h.add(Record(kind="bench", label="b\x1b]0;x\x07", started_at=STARTED, duration_s=1.0,
                 energy_j=1.0))  # fmt: skip
    h.add_sums(
        [
            WindowSums(
                label="step\nnext",
                count=4,
                known=4,
                energy_j=10.0,
                min_j=1.5,
                max_j=4.25,
                duration_s=1.0,
                first_at=STARTED,
                last_at=STARTED,
                intensity_g_per_kwh=400.0,
                pue=1.0,
            )
        ]
    )
    h.close()
    return path


def _history(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[str, str]:
    assert main(["history", "--history", str(db), *args]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_the_kind_column_names_what_kind_takes(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _history(capsys, db)
    shown = {line.split()[2] for line in out.splitlines()[1:] if line.split()[0].isdigit()}
    assert shown == {"run", "bench", "windows"}
    for kind in shown:
        listed, _ = _history(capsys, db, "--kind", kind)
        assert any(line.split()[2] == kind for line in listed.splitlines()[1:]), listed
    only_sums, _ = _history(capsys, db, "--kind", "windows")
    assert [line.split()[2] for line in only_sums.splitlines()[1:]] == ["windows"]
    with pytest.raises(SystemExit):
        main(["history", "--history", str(db), "--kind", "nonsense"])
    err = capsys.readouterr().err
    assert all(repr(kind) in err or kind in err.split() for kind in KINDS), err


def test_each_record_is_one_line_whatever_its_label_or_command_holds(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _history(capsys, db)
    lines = out.splitlines()
    # The header, three records and the legend.
    assert len(lines) == 5, out
    assert "\x1b" not in out and "\x07" not in out
    assert "print(1)\\nprint(2)\\x1b[2J" in out and "step\\nnext" in out


def test_the_estimated_mark_is_explained(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _history(capsys, db)
    assert "3.6e+06~" in out
    assert out.splitlines()[-1].startswith("~ estimated")
    only_bench, _ = _history(capsys, db, "--kind", "bench")
    assert "~" not in only_bench  # no mark, no legend


def test_a_labels_windows_show_min_mean_and_max(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _history(capsys, db)
    assert "x4 (per window: min 1.5, mean 2.5, max 4.25 J)" in out
    rows = json.loads(_history(capsys, db, "--json")[0])
    sums = next(r for r in rows if r["kind"] == "windows")
    assert (sums["count"], sums["min_j"], sums["mean_j"], sums["max_j"]) == (4, 1.5, 2.5, 4.25)


def test_country_reprices_the_listing_and_says_so(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fr = by_country("FR").g_per_kwh
    assert fr != 400.0
    out, _ = _history(capsys, db, "--country", "FR")
    run = next(line for line in out.splitlines() if "python" in line)
    assert f"{emissions_kg(3.6e6, fr) * 1e3:.4g}" in run.split()
    assert "repriced at FR" in out.splitlines()[-1] and f"{fr:g} g/kWh" in out
    # Before the command too, and with a PUE: the same figures, as JSON.
    assert main(["--country", "FR", "--pue", "1.5", "history", "--history", str(db), "--json"]) == 0
    got = capsys.readouterr()
    rows = json.loads(got.out)
    run_row = next(r for r in rows if r["kind"] == "run")
    assert run_row["emissions_kg"] == pytest.approx(emissions_kg(3.6e6, fr, 1.5))
    assert run_row["recorded_emissions_kg"] == 0.4
    assert run_row["intensity_g_per_kwh"] == fr and run_row["pue"] == 1.5
    assert "repriced at FR" in got.err
    # Without a place the figures are as recorded.
    plain = json.loads(_history(capsys, db, "--json")[0])
    assert next(r for r in plain if r["kind"] == "run")["emissions_kg"] == 0.4


def test_a_place_from_the_environment_does_not_reprice(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONFAST_COUNTRY", "FR")
    out, _ = _history(capsys, db)
    assert "repriced" not in out and " 400 " in out


def test_a_bad_place_or_one_with_job_is_an_error(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--history", str(db), "--country", "XX"]) == 2
    assert "unknown country 'XX'" in capsys.readouterr().err
    assert main(["history", "--history", str(db), "--country", "FR", "--job", "j"]) == 2
    assert "--job adds up a job as it was recorded" in capsys.readouterr().err


def test_a_report_refuses_a_place_and_points_to_the_listing(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "1", "--history", str(db), "--country", "FR"]) == 2
    assert "give the place" in capsys.readouterr().err
    assert main(["report", "1", "--history", str(db)]) == 0
