"""The HTML pages (the history dashboard, the run report, the bench report), built from a real
project's history by the command line and opened in headless Chromium with networking off: each
draws its charts, raises no script error, fetches nothing and shows every label as text."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (CI installs it: apt-get install chromium)"
)

# Labels that try to break out of the page's JSON and markup: they must show as text.
WINDOW_LABEL = "step </script><img src=x onerror=cfError('xss')>"
RUN_LABELS = ["train </script> #1", "train & eval <b>2</b>", "infer '3'"]
BENCH_LABEL = "sum vs loop <i>"


@dataclass
class Project:
    root: Path
    history: Path
    env: dict[str, str]
    run_ids: list[int]
    bench_id: int


def _cli(*args: str, project: Project) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbonfast", *args],
        env=project.env,
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    )


def _bump(fake: FakePowercap, delta_uj: int, sleep_s: float) -> list[str]:
    path = fake.path("intel-rapl:0")
    code = (
        f"import time; p={str(path)!r}\n"
        f"for _ in range(10):\n"
        f"    time.sleep({sleep_s / 10}); v=int(open(p).read())\n"
        f"    open(p,'w').write(str(v+{delta_uj}))"
    )
    return [sys.executable, "-c", code]


@pytest.fixture
def project(fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project (a pyproject.toml, so the history is its own) with three traced runs, one
    label of 50 windows and a benchmark of two variants."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    monkeypatch.delenv("CARBONFAST_HISTORY")
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(fake.root)}
    p = Project(root, root / ".carbonfast" / "history.sqlite", env, [], 0)
    for label in RUN_LABELS:
        r = _cli(
            "--country", "FR", "run", "--sample-hz", "50", "--label", label, "--",
            *_bump(fake, 2_000_000, 0.4), project=p,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert p.history.exists()
    # The windows and the benchmark, recorded from this process, go to the project's history.
    monkeypatch.setenv("CARBONFAST_HISTORY", str(p.history))
    meter = cf.Meter(fake.root, history=str(p.history))
    for _ in range(50):
        with meter.measure(WINDOW_LABEL):
            fake.add("intel-rapl:0", 100_000)
    meter._recorder.flush()
    cf.bench(
        {"loop": lambda: sum(range(50)), "sum": lambda: None},
        meter=meter,
        rounds=2,
        record=True,
        label=BENCH_LABEL,
    )
    with sqlite3.connect(p.history) as db:
        p.run_ids = [i for (i,) in db.execute("SELECT id FROM runs WHERE kind = 'run'")]
        (p.bench_id,) = db.execute("SELECT id FROM runs WHERE kind = 'bench'").fetchone()
        count = db.execute(
            "SELECT json_extract(report, '$.count') FROM runs WHERE kind = 'windows'"
        ).fetchone()
    assert len(p.run_ids) == 3 and count == (50,)
    return p


@dataclass
class Opened:
    dom: str
    console: list[str]

    @property
    def root(self) -> dict[str, str]:
        tag = re.search(r"<html[^>]*>", self.dom)
        assert tag, self.dom[:200]
        return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', tag.group()))


def _open(page: Path) -> Opened:
    """The page as Chromium renders it, with no network (every host unresolvable, a dead
    proxy), and what its console said."""
    assert CHROMIUM is not None
    r = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
            "--v=0", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return Opened(r.stdout, [line for line in r.stderr.splitlines() if ":CONSOLE" in line])


def _fetches_nothing(text: str) -> None:
    """No address in src, href, url() or an import: the page holds all it needs."""
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", text, re.I)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def _drew(opened: Opened, charts: int) -> None:
    attrs = opened.root
    assert attrs.get("data-ready") == "1", opened.dom[-2000:]
    assert "data-errors" not in attrs, re.search(r'id="cf-errors"[^>]*>[^<]*', opened.dom)
    assert attrs.get("data-fetched") == "0"
    assert int(attrs.get("data-charts", 0)) >= charts
    assert opened.dom.count('class="uplot') >= charts
    assert not opened.console, opened.console


@needs_chromium
def test_the_history_dashboard_draws_every_chart_offline(project: Project) -> None:
    page = project.root / "dash.html"
    r = _cli("history", "--html", "dash.html", project=project)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    print(f"history dashboard: {len(text.encode()):,} bytes")
    _fetches_nothing(text)
    # No label breaks out of the JSON: the only script ends are the page's own five.
    assert text.count("</script>") == 5
    opened = _open(page)
    _drew(opened, charts=3)
    for label in [*RUN_LABELS, WINDOW_LABEL, BENCH_LABEL]:
        assert html.escape(label, quote=False) in opened.dom, label
    # The bench's two variants, with their intervals.
    assert opened.dom.count(">loop<") >= 1 and opened.dom.count(">sum<") >= 1
    assert "ratio to the best" in opened.dom and "significant" in opened.dom
    assert "50" in re.search(r'<table class="data" id="labels">.*?</table>', opened.dom, re.S)[0]


@needs_chromium
def test_the_run_report_draws_power_from_zero_with_a_legend(project: Project) -> None:
    page = project.root / "run.html"
    r = _cli("report", str(project.run_ids[0]), "--html", "run.html", project=project)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    print(f"run report: {len(text.encode()):,} bytes")
    _fetches_nothing(text)
    data = json.loads(re.search(r'id="cf-data">(.*?)</script>', text, re.S)[1])
    trace = data["trace"]
    assert len(trace["t"]) >= 2 and trace["t"][0] == 0
    assert {d["name"] for d in trace["domains"]} >= {"package-0"} and trace["total"]
    opened = _open(page)
    _drew(opened, charts=1)
    assert "u-legend" in opened.dom and "package-0 (measured)" in opened.dom
    assert ">total<" in opened.dom or ">total:" in opened.dom or "total</th>" in opened.dom
    assert html.escape(RUN_LABELS[0], quote=False) in opened.dom
    assert "Energy per domain" in opened.dom


@needs_chromium
def test_the_bench_report_compares_its_variants(project: Project) -> None:
    page = project.root / "bench.html"
    r = _cli("report", str(project.bench_id), "--html", "bench.html", project=project)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    print(f"bench report: {len(text.encode()):,} bytes")
    _fetches_nothing(text)
    opened = _open(page)
    attrs = opened.root
    assert "data-errors" not in attrs and attrs.get("data-fetched") == "0"
    assert not opened.console, opened.console
    table = re.search(r'<div id="comparison">.*?</table>', opened.dom, re.S)
    assert table and table[0].count("<tr>") == 3  # the header and two variants
    assert "95% CI" in table[0] and "g CO2e / 1M calls" in table[0]
    assert re.search(r"(?:not )?significant", table[0])
    assert opened.dom.count("<svg") >= 2 and html.escape(BENCH_LABEL, quote=False) in opened.dom


@needs_chromium
def test_a_page_that_fetches_is_caught(tmp_path: Path) -> None:
    """The checks above can fail: a page that asks for an image on the network is blocked,
    and says so in the page and on the console."""
    from carbonfast.report.page import document

    page = tmp_path / "bad.html"
    page.write_text(document("bad", '<img src="https://example.invalid/x.png">'))
    opened = _open(page)
    assert opened.root.get("data-errors") == "1"
    assert "blocked a fetch of https://example.invalid/x.png" in opened.dom
    assert opened.console


def test_a_run_too_short_for_a_plot_says_so(fake: FakePowercap, tmp_path: Path) -> None:
    page = tmp_path / "short.html"
    r = subprocess.run(
        [sys.executable, "-m", "carbonfast", "run", "--html", str(page), "--", "true"],
        env={**os.environ, "CARBONFAST_POWERCAP_ROOT": str(fake.root)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert 'id="no-plot"' in text and "a plot needs at least 2" in text
    assert "<canvas" not in text and "uPlot" not in text  # nothing to draw, no library


def test_embedded_json_cannot_end_its_script() -> None:
    from carbonfast.report.page import json_script

    element = json_script("d", {"label": "</script><script>alert(1)</script>&"})
    assert element.count("</script>") == 1 and "<script>alert" not in element
    body = element.removeprefix('<script type="application/json" id="d">')
    assert json.loads(body.removesuffix("</script>"))["label"].startswith("</script>")


def test_the_dashboard_adds_up_a_large_history_before_embedding_it(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
    try:
        from bench_history_html import build
    finally:
        sys.path.pop(0)
    from carbonfast.report import dashboard_data

    path = tmp_path / "h.sqlite"
    build(path, 5000)
    with sqlite3.connect(path) as db:
        data = dashboard_data.collect(db)
    cells = data["series"]["cells"]
    assert 0 < len(cells["g"]) <= dashboard_data.MAX_CELLS
    assert sum(cells["n"]) == 5000  # every record is in one bucket
    assert len(data["labels"]) == 1000 and len(data["records"]) == dashboard_data.MAX_RECORDS
    assert data["benches"] and data["jobs"]
    assert len({g["label"] for g in data["series"]["groups"]}) <= dashboard_data.MAX_LABELS + 1


def test_html_reports_import_no_plotting_library(fake: FakePowercap, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from carbonfast.report import html\n"
        "from carbonfast.record import Record\n"
        "r = Record(kind='run', started_at='2025-01-01T00:00:00+00:00', duration_s=1.0,"
        " energy_j=1.0)\n"
        "html.render(r, {'t_s': [0, 1, 2], 'power_w': {'package-0': [None, 1.0, 2.0]}})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'numpy')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_uplot_files_ship_with_the_package() -> None:
    from carbonfast.report.page import ASSETS

    names = {p.name for p in ASSETS.iterdir()}
    assert {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "README.md", "pages.js"} <= names
    assert "(v1.6.32)" in (ASSETS / "uPlot.iife.min.js").read_text()[:200]


@needs_chromium
def test_the_dashboards_filters_start_where_the_command_line_says(project: Project) -> None:
    page = project.root / "dash.html"
    r = _cli("history", "--html", "dash.html", "--label", "infer", "--kind", "run", project=project)
    assert r.returncode == 0, r.stderr
    opened = _open(page)
    _drew(opened, charts=3)
    assert 'id="f-label" type="search" size="24" value="infer"' in opened.dom
    assert 'data-selected="run"' in opened.dom
    records = re.search(r'<table[^>]*id="records".*?</table>', opened.dom, re.S)
    assert records, opened.dom[-2000:]
    # The listing holds the one run whose label has "infer", and no other record.
    assert html.escape(RUN_LABELS[2], quote=False) in records[0]
    assert html.escape(RUN_LABELS[0], quote=False) not in records[0]
    assert html.escape(BENCH_LABEL, quote=False) not in records[0]


def test_a_page_that_cannot_be_written_is_named_as_given(project: Project) -> None:
    for args in (("history",), ("report", str(project.run_ids[0]))):
        r = _cli(*args, "--html", "/proc/x.html", project=project)
        assert r.returncode == 2, r.stderr
        assert "--html /proc/x.html: cannot be written there" in r.stderr, r.stderr
        assert ".tmp" not in r.stderr
