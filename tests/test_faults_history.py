"""Faults of the history, job merging, CSV, live intensity, config and terminal output: each
test fails on the code before its fix. Several play an attacker on a shared machine (planted
FIFOs and links, concurrent writers, garbage files and values)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonfast.report.history import History
from carbonfast.report.record import Record


def _env(**extra: str) -> dict[str, str]:
    # The package as installed (tests may run in another directory than the source tree).
    return {**os.environ, **extra}


def _cli(
    *args: str, cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", *args],
        env=_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _run_record(label: str = "r", **kw: object) -> Record:
    return Record(
        kind="run",
        started_at="2026-01-01T00:00:00+00:00",
        label=label,
        duration_s=1.0,
        energy_j=1.0,
        **kw,  # type: ignore[arg-type]
    )


# 1. Label sums written by many processes at once -----------------------------------------

_SUMS_WRITER = """
import sys
import carbonfast as cf
path, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
meter = cf.Meter(sys.argv[4], history=path, estimate=False)
import os, time
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(n):
    with meter.measure("step"):
        pass
    if i % 50 == 49:
        meter._recorder.flush()
meter._recorder.flush()
"""


def test_label_sums_from_20_processes_at_once_count_every_window(tmp_path: Path) -> None:
    """20 processes x 2,000 windows of one label, into one history: exactly 40,000, each
    process flushing its sums 40 times so that the read-modify-writes overlap."""
    path = tmp_path / "h.sqlite"
    go = tmp_path / "go"
    History(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SUMS_WRITER, str(path), "2000", str(go), str(tmp_path / "n")],
            env=_env(CARBONFAST_HISTORY=str(path)),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    time.sleep(0.5)
    go.touch()
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        if p.returncode != 0 or "Warning" in err:
            errors.append(err)
    assert errors == []
    [row] = History(path).list(label="step")
    assert row["count"] == 40_000


# 2. A history another process holds ------------------------------------------------------

_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO meta VALUES ('held', 'yes')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
db.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def _stamp(marker: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import time; open({str(marker)!r}, 'w').write(repr(time.time()))",
    ]


def test_a_locked_history_does_not_hold_the_command_back(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.sqlite"
    History(path).close()
    holder = _hold(path, 5.0)
    marker = tmp_path / "started"
    try:
        t0 = time.time()
        out = _cli(
            "run",
            "--",
            *_stamp(marker),
            cwd=tmp_path,
            CARBONFAST_POWERCAP_ROOT=str(fake.root),
            CARBONFAST_HISTORY=str(path),
        )
    finally:
        holder.kill()
        holder.wait()
    started = float(marker.read_text()) - t0
    assert out.returncode == 0, out.stderr
    assert started < 4.0, f"the command started after {started:.1f} s"
    assert f"the history {path} is locked by another process" in out.stderr
    assert "Traceback" not in out.stderr
    # Free again within the wait after the command: the run is recorded.
    assert [r["kind"] for r in History(path, read_only=True).list()] == ["run"]


def test_a_history_locked_past_the_wait_is_named_in_a_warning(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.sqlite"
    History(path).close()
    holder = _hold(path, 60.0)
    code = (
        "import sys, carbonfast.cli as c, carbonfast.cli.run_outputs as o; o.HISTORY_WAIT_S = 1.0; "
        "sys.exit(c.main(['run', '--', sys.executable, '-c', 'raise SystemExit(3)']))"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=_env(CARBONFAST_POWERCAP_ROOT=str(fake.root), CARBONFAST_HISTORY=str(path)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 3, out.stderr
    assert f"the history {path} is still locked by another process" in out.stderr
    assert "not recorded" in out.stderr and "Traceback" not in out.stderr


# 3. A history file that is not one ----------------------------------------------------------


def _real_history(path: Path, runs: int = 300) -> None:
    h = History(path)
    for i in range(runs):
        h.add(_run_record(f"run {i}", notes=["x" * 200]))
    h.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _bad_files(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """name: (content, what carbonfast must say the file is)."""
    real = tmp_path / "real.sqlite"
    _real_history(real)
    whole = real.read_bytes()
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE users (name TEXT, password TEXT)")
        db.execute("INSERT INTO users VALUES ('root', 'hunter2')")
    db.close()
    return {
        "random": (os.urandom(4096), "not a database"),
        "truncated": (whole[: len(whole) // 3], "damaged SQLite database"),
        "short": (whole[:40], "truncated SQLite database"),
        "text": (b"hello, this is my shopping list\nmilk\n", "a text file"),
        "foreign": (foreign.read_bytes(), "another program"),
    }


def test_history_and_report_on_a_file_that_is_no_history_change_nothing(
    tmp_path: Path,
) -> None:
    for name, (content, what) in _bad_files(tmp_path).items():
        path = tmp_path / f"{name}.sqlite"
        path.write_bytes(content)
        for args in (("history",), ("report", "1"), ("history", "--job", "j")):
            out = _cli(*args, "--history", str(path), cwd=tmp_path)
            assert "Traceback" not in out.stderr, (name, args, out.stderr)
            if name == "truncated" and args[0] == "history" and out.returncode == 0:
                continue  # the pages it needed were still there
            assert out.returncode == 2, (name, args, out.stderr)
            assert what in out.stderr and "Nothing was changed" in out.stderr, (name, out.stderr)
            assert f"mv {path} {path}.bak" in out.stderr
        assert path.read_bytes() == content, name
        assert sorted(p.name for p in tmp_path.glob(f"{name}.sqlite*")) == [f"{name}.sqlite"]


def test_a_run_moves_a_file_that_is_no_history_aside(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name, (content, what) in _bad_files(tmp_path).items():
        path = tmp_path / f"{name}.sqlite"
        path.write_bytes(content)
        out = _cli(
            "run",
            "--",
            "true",
            cwd=tmp_path,
            CARBONFAST_POWERCAP_ROOT=str(fake.root),
            CARBONFAST_HISTORY=str(path),
        )
        assert out.returncode == 0 and "Traceback" not in out.stderr, (name, out.stderr)
        [backup] = [p for p in tmp_path.glob(f"{name}.sqlite.bak-*") if not p.name.endswith("-wal")]
        assert backup.read_bytes() == content, name
        assert what in out.stderr and f"moved it aside to {backup}" in out.stderr, out.stderr
        assert [r["label"] for r in History(path, read_only=True).list()] == ["true"], name


def test_a_damaged_history_found_while_writing_is_set_aside_and_the_record_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite"
    _real_history(path)
    h = History(path, say=lambda m: said.append(m))
    said: list[str] = []
    with open(path, "r+b") as f:  # damaged under an open history: its pages are garbage
        f.seek(4096)
        f.write(os.urandom(os.path.getsize(path) - 4096))
    h.add(_run_record("kept"))
    assert [r["label"] for r in h.list()] == ["kept"]
    assert h.moved_aside is not None and h.moved_aside.exists()
    assert len(said) == 1 and "moved it aside" in said[0]


def test_the_backup_name_is_never_one_planted_in_advance(tmp_path: Path) -> None:
    """A link planted at a guessable backup name is neither followed nor replaced."""
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"not a database at all, just text\n")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in (".bak", f".bak-{stamp}", ".bak-0"):
        os.symlink(victim, tmp_path / f"h.sqlite{suffix}")
    said: list[str] = []
    h = History(path, say=said.append)
    assert h.moved_aside is not None and not h.moved_aside.is_symlink()
    assert h.moved_aside.read_bytes() == b"not a database at all, just text\n"
    assert victim.read_text() == "precious"
    assert "moved it aside" in said[0] and [r["label"] for r in h.list()] == []


def test_a_row_with_a_null_report_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History(path).add(_run_record("good", job_id="j", rank=0, world_size=2))
    with sqlite3.connect(path) as db:  # a history edited by hand: the report may be NULL
        db.execute("PRAGMA writable_schema=ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'report TEXT NOT NULL', 'report TEXT') "
            "WHERE name = 'runs'"
        )
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO runs (kind, label, started_at, duration_s, estimated, report, job_id, "
            "rank, world_size) VALUES ('run', 'bad', 'x', 1, 0, NULL, 'j', 1, 2)"
        )
        db.execute(
            "INSERT INTO runs (kind, label, started_at, duration_s, estimated, report, job_id, "
            "rank, world_size) VALUES ('run', 'worse', 'x', 1, 0, '[[[', 'j', 1, 2)"
        )
    out = _cli("history", "--job", "j", "--history", str(path), cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "run 2 has no readable report (NULL); skipped" in out.stderr
    assert "run 3 has no readable report" in out.stderr and "good" in out.stdout
    out = _cli("report", "2", "--history", str(path), cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "run 2 in" in out.stderr and "NULL" in out.stderr
    out = _cli("history", "--history", str(path), cwd=tmp_path)
    assert out.returncode == 0 and "bad" in out.stdout, out.stderr


# 4. history --merge of what is not a job's part -------------------------------------------


def _part(**kw: object) -> dict[str, object]:
    return {**_run_record("train", job_id="j", host="h", rank=0, world_size=2).to_dict(), **kw}


@pytest.mark.parametrize("what", ["fifo", "zero", "fifo-in-dir"])
def test_merge_refuses_a_fifo_or_a_device_at_once(tmp_path: Path, what: str) -> None:
    if what == "zero":
        source = tmp_path / "part.json"
        os.symlink("/dev/zero", source)
    elif what == "fifo":
        source = tmp_path / "part.json"
        os.mkfifo(source)
    else:
        source = tmp_path / "job"
        source.mkdir()
        os.mkfifo(source / "h.rank1.json")
        (source / "h.rank0.json").write_text(json.dumps(_part()))
    history = tmp_path / "h.sqlite"
    out = _cli(
        "history", "--merge", str(source), "--history", str(history), cwd=tmp_path, timeout=30
    )
    assert "Traceback" not in out.stderr, out.stderr
    assert "not a regular file" in out.stderr
    if what == "fifo-in-dir":  # the directory's other parts are merged
        assert out.returncode == 0 and "1 record(s) merged" in out.stderr, out.stderr
    else:
        assert out.returncode == 2 and str(source) in out.stderr


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        json.dumps(_part(world_size="two")),
        json.dumps(_part(domains=[1, 2])),
        json.dumps(_part(domains={"cpu": {"energy_j": "lots", "kind": "package"}})),
        json.dumps(_part(energy_range_j=[1])),
        json.dumps(_part(duration_s=None, started_at=5)),
        json.dumps(_part(world_size=10**12)),
        json.dumps(_part(rank=-1)),
        json.dumps(_part(rank=7, world_size=2)),
        json.dumps(_part(missing_ranks=["x"])),
        json.dumps(_part(hosts={"h": {"ranks": "0"}})),
        json.dumps([_part(), 5]),
        # Numbers outside their ranges, held as strictly as live readings.
        json.dumps(_part(energy_j=1e308)),
        json.dumps(_part(energy_j=-1e308)),
        json.dumps(_part(energy_j=-1.0)),
        json.dumps(_part(duration_s=1e300)),
        json.dumps(_part(energy_j=5.0, energy_range_j=[6.0, 9.0])),
        json.dumps(_part(energy_j=5.0, energy_range_j=[9.0, 1.0])),
        json.dumps(_part(domains={"gpu-0": {"energy_j": 1e308, "kind": "gpu"}})),
        json.dumps(_part(domains={"gpu-0": {"energy_j": -3.0, "kind": "gpu"}})),
        json.dumps(
            _part(domains={"gpu-0": {"energy_j": 3.0, "kind": "gpu", "energy_range_j": [4, 5]}})
        ),
        json.dumps(_part(hosts={"h": {"energy_j": -1e308, "ranks": [0]}})),
        json.dumps(_part(emissions_kg=-1.0)),
    ],
)
def test_merge_names_the_file_of_a_part_that_is_no_report(tmp_path: Path, text: str) -> None:
    source = tmp_path / "part.json"
    source.write_text(text)
    history = tmp_path / "h.sqlite"
    out = _cli(
        "history", "--merge", str(source), "--history", str(history), cwd=tmp_path, timeout=30
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"--merge {source}: not a" in out.stderr, out.stderr


def test_a_stored_part_with_an_absurd_world_size_does_not_spin(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History(path).add(_run_record("train", job_id="j", host="h", rank=0, world_size=2))
    with sqlite3.connect(path) as db:  # stored by an older carbonfast, or edited
        db.execute("UPDATE runs SET report = json_set(report, '$.world_size', 1000000000000)")
    out = _cli("history", "--job", "j", "--history", str(path), cwd=tmp_path, timeout=30)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "world_size 1000000000000 is not 1 to" in out.stderr


@pytest.mark.parametrize("energy", ["NaN", "1e308", "-1e308"])
def test_a_stored_part_with_an_absurd_energy_is_skipped_not_added(
    tmp_path: Path, energy: str
) -> None:
    """A part edited in the history (NaN, or +-1e308 J in one second) is named and left out:
    the job's total is the sane parts' own, never "nan J" or 309 digits."""
    path = tmp_path / "h.sqlite"
    history = History(path)
    for rank in (0, 1):
        history.add(_run_record("train", job_id="j", host="h", rank=rank, world_size=2))
    history.close()
    with sqlite3.connect(path) as db:  # NaN: json_set cannot write it, text can
        [(rid, report)] = db.execute("SELECT id, report FROM runs WHERE rank = 1").fetchall()
        d = json.loads(report)
        text = json.dumps(d).replace(f'"energy_j": {json.dumps(d["energy_j"])}', "@", 1)
        db.execute(
            "UPDATE runs SET report = ? WHERE id = ?",
            (text.replace("@", f'"energy_j": {energy}'), rid),
        )
    out = _cli("history", "--job", "j", "--history", str(path), cwd=tmp_path, timeout=30)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "skipped" in out.stderr, out.stderr
    assert "nan" not in out.stdout.lower() and "0000000000" not in out.stdout, out.stdout
    good = _run_record("train", job_id="j", host="h", rank=0, world_size=2).energy_j
    assert f"{good:.4f} J over the job" in out.stdout, out.stdout


def test_missing_ranks_are_listed_as_spans(tmp_path: Path) -> None:
    from carbonfast.report.job import format_job, summarize

    records = [_run_record("t", job_id="j", host="h", rank=r, world_size=100_000) for r in (0, 5)]
    text = format_job("j", records, summarize(records))
    assert "rank(s) 1-4, 6-99999 left no record" in text


def _merge_or_clean_error(tmp_path: Path, content: bytes) -> None:
    from carbonfast.report.job import format_job, read_sources, summarize

    source = tmp_path / "part.json"
    source.write_bytes(content)
    try:
        records = read_sources([source])
    except ValueError as e:
        assert str(source) in str(e)
        return
    history = History(tmp_path / "h.sqlite")
    try:
        history.import_records(records)
        merged = history.job_records()
        for job in {r.job_id for r in merged}:
            format_job(str(job), merged, summarize([r for r in merged if r.job_id == job]))
    finally:
        history.close()
        for p in tmp_path.glob("h.sqlite*"):
            p.unlink()


# Reports with the fields of a part, and values of any JSON type in them.
_FIELD_NAMES = [*_part().keys(), "hosts", "missing_ranks", "ranks", "domains"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
_parts = st.builds(
    lambda base, extra: {**base, **extra},
    st.just(_part()),
    st.dictionaries(st.sampled_from(_FIELD_NAMES), _json, max_size=4),
)
_fuzz = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_fuzz
@given(st.one_of(_json, _parts, st.lists(_parts, max_size=3)))
def test_merge_takes_any_json_or_names_the_file(tmp_path: Path, data: object) -> None:
    _merge_or_clean_error(tmp_path, json.dumps(data).encode())


@_fuzz
@given(st.binary(max_size=300))
def test_merge_takes_any_bytes_or_names_the_file(tmp_path: Path, data: bytes) -> None:
    _merge_or_clean_error(tmp_path, data)


# 5. emissions.csv ------------------------------------------------------------------------


def _csv_row(run_id: str = "r1") -> dict[str, object]:
    from carbonfast.report import emissions_csv

    record = Record.from_dict(
        {"started_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "energy_j": 3.6e6}
    )
    return emissions_csv.row(record, run_id=run_id)


def _rows(path: Path) -> list[list[str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_a_row_is_not_glued_to_a_last_line_without_newline(tmp_path: Path) -> None:
    from carbonfast.report import emissions_csv

    path = tmp_path / "emissions.csv"
    emissions_csv.append(path, _csv_row("r1"))
    with open(path, "rb+") as f:  # a writer killed mid-row, or an editor without final newline
        f.seek(-1, os.SEEK_END)
        f.truncate()
    emissions_csv.append(path, _csv_row("r2"))
    rows = _rows(path)
    assert [len(r) for r in rows] == [38, 38, 38]
    assert [r[2] for r in rows[1:]] == ["r1", "r2"]


@pytest.mark.parametrize("where", ["header", "row"])
def test_a_csv_that_is_not_utf8_is_set_aside_and_the_row_kept(tmp_path: Path, where: str) -> None:
    from carbonfast.report import emissions_csv
    from carbonfast.report.emissions_csv import COLUMNS

    path = tmp_path / "emissions.csv"
    header = ",".join(COLUMNS).encode()
    if where == "header":
        content = b"time\xe9stamp,\xff\xfe\n1,2\n"
    else:
        content = header + b"\n" + b"2024,caf\xe9,x" + b"," * 35 + b"\n"
    path.write_bytes(content)
    os.symlink(tmp_path / "victim", tmp_path / "emissions.csv.bak")  # planted: not followed
    if where == "header":
        emissions_csv.append(path, _csv_row("new"))
    else:
        emissions_csv.replace_run(path, _csv_row("new"))
    backup = tmp_path / "emissions.csv.1.bak"
    assert backup.read_bytes() == content
    assert not (tmp_path / "victim").exists()
    rows = _rows(path)
    assert rows[0] == list(COLUMNS) and [r[2] for r in rows[1:]] == ["new"]


def test_a_csv_with_another_header_is_set_aside_under_a_free_name(tmp_path: Path) -> None:
    from carbonfast.report import emissions_csv

    path = tmp_path / "emissions.csv"
    path.write_text("a,b\n1,2\n")
    (tmp_path / "emissions.csv.bak").write_text("older backup")
    emissions_csv.append(path, _csv_row("new"))
    assert (tmp_path / "emissions.csv.bak").read_text() == "older backup"
    assert (tmp_path / "emissions.csv.1.bak").read_text() == "a,b\n1,2\n"
    assert [r[2] for r in _rows(path)[1:]] == ["new"]


# 6. A live intensity answer nested past the parser's depth ----------------------------------


def test_a_deeply_nested_live_answer_falls_back_to_the_table(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import carbonfast as cf
    from carbonfast.carbon import tables

    class Deep(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Deep)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
        monkeypatch.setenv(
            "CARBONFAST_ELECTRICITYMAPS_URL", f"http://127.0.0.1:{server.server_port}/v3"
        )
        with cf.Meter(fake.root, zone="FR").measure() as m:
            fake.add("intel-rapl:0", 1_000_000)
        # The intensity is looked up when first asked for.
        assert m.energy_j is not None and m.energy_j > 0
        assert m.intensity_g_per_kwh == tables.zones()["zones"]["FR"]["g_per_kwh"]
        assert any("live intensity unavailable" in n and "nested" in n for n in m.notes), m.notes
    finally:
        server.shutdown()
        server.server_close()


def test_any_failure_of_the_live_lookup_falls_back_to_the_table(
    fake, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import carbonfast as cf
    from carbonfast.carbon import live, tables

    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("no memory left for the answer")

    monkeypatch.setattr(live, "latest", broken)
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
    with cf.Meter(fake.root, zone="FR").measure() as m:
        pass
    assert m.intensity_g_per_kwh == tables.zones()["zones"]["FR"]["g_per_kwh"]
    assert any("live intensity unavailable" in n for n in m.notes)


# 7. The config file ----------------------------------------------------------------------


def _read_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads `path` as the config file and resolves every setting from it: either settings, or
    a ValueError naming the file."""
    from carbonfast import config

    try:
        values, name = config._read_table(path, tool_table=False)
        monkeypatch.setattr(config, "config_file", lambda: (values, name))
        config.resolve(tuple(config.SETTINGS), {})
    except ValueError as e:
        assert str(path) in str(e), e


def test_a_config_file_nested_too_deeply_is_a_value_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbonfast import config

    path = tmp_path / "carbonfast.toml"
    path.write_text("country = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ValueError, match=r"carbonfast\.toml: cannot read it as TOML"):
        config._read_table(path, tool_table=False)
    out = _cli("info", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert str(path) in out.stderr


def _toml_value() -> st.SearchStrategy[str]:
    scalar = st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=True).map(lambda f: str(f).replace("inf", "inf")),
        st.booleans().map(lambda b: str(b).lower()),
        st.text(max_size=12).map(json.dumps),
    )
    return st.recursive(
        scalar,
        lambda inner: st.lists(inner, max_size=3).map(lambda v: f"[{', '.join(v)}]"),
        max_leaves=8,
    )


@_fuzz
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [*__import__("carbonfast.config", fromlist=["SETTINGS"]).SETTINGS, "x"]
                ),
                _toml_value(),
            ),
            max_size=4,
        ).map(lambda kv: "".join(f"{k} = {v}\n" for k, v in kv)),
    )
)
def test_any_config_text_gives_settings_or_a_value_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = tmp_path / "carbonfast.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with monkeypatch.context() as m:
        _read_config(path, m)


# 8. Text from outside reaching the terminal ------------------------------------------------

EVIL = "a\x1b[2J\x1b]0;pwned\x07\rb\nc\u202ed\x9b"


def _controls(text: str) -> list[str]:
    """The characters in printed `text` that act on the terminal (line breaks aside)."""
    return [
        c
        for c in text
        if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2028")
    ]


def test_the_console_summary_escapes_labels_names_and_notes() -> None:
    from carbonfast.report.console import format_summary
    from carbonfast.report.record import DomainRecord

    record = _run_record(
        EVIL,
        host=EVIL,
        job_id=EVIL,
        rank=0,
        world_size=1,
        notes=[EVIL],
        location=EVIL,
        domains={EVIL: DomainRecord(energy_j=1.0, kind="package", estimated=False)},
    )
    text = format_summary(record)
    assert _controls(text) == []
    assert "a\\x1b[2J\\x1b]0;pwned\\x07\\rb\\nc\\u202ed\\x9b" in text


def test_the_history_table_keeps_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = History(path)
    h.add(_run_record(EVIL))
    h.add(_run_record("plain", job_id=EVIL, host=EVIL, rank=0, world_size=1))
    h.close()
    out = _cli("history", "--history", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and _controls(out.stdout) == []
    out = _cli("history", "--job", EVIL, "--history", str(path), cwd=tmp_path)
    assert out.returncode == 0 and _controls(out.stdout + out.stderr) == [], out.stdout


def test_info_escapes_what_the_machine_names(fake) -> None:  # type: ignore[no-untyped-def]
    from carbonfast.info import format_info, info

    data = info(fake.root)
    d = data["sources"][0]["domains"][0]
    d["name"], d["label"], d["path"] = EVIL, EVIL, EVIL
    data["sources"][0]["notes"] = [EVIL]
    data["problems"] = [{"source": "x", "kind": "k", "path": EVIL, "reason": EVIL, "fix": EVIL}]
    data["carbon"]["note"] = EVIL
    text = format_info(data)
    assert _controls(text) == [] and text.count("\\x1b[2J") >= 5
    assert "\n\nsource " in text  # the blank lines between sections are kept


def test_warnings_and_errors_escape_what_they_quote(tmp_path: Path) -> None:
    out = _cli("report", "1", "--history", str(tmp_path / f"{EVIL}.sqlite"), cwd=tmp_path)
    assert out.returncode == 2 and _controls(out.stderr) == [], out.stderr


# Further: writers that all find a damaged history at once -----------------------------------

_REPAIRER = """
import sys, os, time, warnings
from carbonfast.report.history import History
from carbonfast.report.record import Record
path, go, i = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.002)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    History(path).add(Record(kind="run", started_at="2026-01-01", label="w" + i, duration_s=1.0,
                             energy_j=1.0))
"""


def test_writers_finding_a_damaged_history_at_once_all_record(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(os.urandom(8192))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REPAIRER, str(path), str(go), str(i)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    time.sleep(0.5)
    go.touch()
    errors = [err for p in procs for err in [p.communicate(timeout=60)[1]] if p.returncode]
    assert errors == []
    labels = sorted(r["label"] for r in History(path, read_only=True).list())
    assert labels == [f"w{i}" for i in range(8)]
    backups = [p for p in tmp_path.glob("h.sqlite.bak-*") if not p.name.endswith("-wal")]
    assert len(backups) == 1 and len(backups[0].read_bytes()) == 8192
