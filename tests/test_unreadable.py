"""A meter without (some) readable counters works, measures what it can, and says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap


def _powercap(problems: list[dict]) -> list[dict]:
    """With no usable RAPL path, every path reports; these tests are about powercap's."""
    return [p for p in problems if p["source"] == "powercap"]


def test_a_missing_root_gives_unknown_energy_never_zero(tmp_path: Path) -> None:
    meter = cf.Meter(tmp_path / "no-such-dir", estimate=False)
    assert not meter.readable
    with meter.measure() as m:
        pass
    assert m.energy_j is None
    assert m.power_w is None
    assert m.domains == {}
    assert any("energy unknown (not zero)" in n for n in m.notes)
    # One line for the paths that all failed; the full reasons and fixes are in info().
    [paths_note] = [n for n in m.notes if n.startswith("no RAPL counter is readable here")]
    assert "powercap: missing" in paths_note and "carbonfast info" in paths_note


def test_info_lists_the_missing_root_with_reason_and_fix(tmp_path: Path) -> None:
    root = tmp_path / "no-such-dir"
    data = cf.info(root)
    assert data["measured"] is False
    assert data["estimated"] is True
    [problem] = _powercap(data["problems"])
    assert problem["path"] == str(root)
    assert problem["kind"] == "missing"
    assert "modprobe" in problem["fix"]


def test_an_empty_root_says_it_has_no_zones(empty_fake: FakePowercap) -> None:
    [problem] = _powercap(cf.info(empty_fake.root)["problems"])
    assert "no RAPL zones" in problem["reason"]


def test_malformed_files_disable_their_zone_only(fake: FakePowercap) -> None:
    fake.write("intel-rapl:0:0", "energy_uj", "not a number\n")
    fake.write("intel-rapl:0:1", "max_energy_range_uj", "\n")
    meter = cf.Meter(fake.root, estimate=False)
    assert meter.domain_names == ["package-0"]
    kinds = sorted((p.kind, Path(p.path).name) for p in meter.problems)
    assert kinds == [("malformed", "energy_uj"), ("malformed", "max_energy_range_uj")]
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert m.energy_j == 1.0
    assert any("not a number" in n for n in m.notes)


def test_a_counter_broken_after_start_is_unknown_and_named(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    meter.begin("w")
    fake.add("intel-rapl:0:1", 2_000_000)
    fake.write("intel-rapl:0", "energy_uj", "garbage\n")
    m = meter.end("w")
    assert m.domains["package-0"] is None and m.domains["dram-0"] == 2.0
    assert m.energy_j == 2.0 and m.partial
    [note] = [n for n in m.notes if n.startswith("package-0: could not be read")]
    assert "intel-rapl:0/energy_uj" in note


def _info_without_read_permission(root: Path) -> dict:
    """cf.info(root) in a process that file permissions apply to.

    Root bypasses file modes, so as root the child drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH first, exactly as an unprivileged user would be.
    """
    code = f"import json, carbonfast; print(json.dumps(carbonfast.info({str(root)!r})))"
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop the DAC capabilities")
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0 and "setpriv" in out.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_eacces_on_energy_uj_opens_the_counters_to_a_group_only(fake: FakePowercap) -> None:
    fake.chmod("intel-rapl:0:1", 0o000)
    data = _info_without_read_permission(fake.root)
    # The readable domains are still measured.
    [powercap] = [s for s in data["sources"] if s["name"] == "powercap"]
    names = [d["name"] for d in powercap["domains"]]
    assert names == ["package-0", "core-0"]
    # The fake's counters are files that never move: `info` also says they look frozen.
    [problem] = [p for p in data["problems"] if p["kind"] != "frozen"]
    assert problem["kind"] == "permission"
    assert problem["path"].endswith("intel-rapl:0:1/energy_uj")
    fix = problem["fix"]
    glob = f"{fake.root}/intel-rapl*:*/energy_uj"
    assert f"sudo chgrp power {glob} && sudo chmod g+r {glob}" in fix
    assert f"z {glob} 0440 root power -" in fix
    assert 'SUBSYSTEM=="powercap"' in fix
    # No capability on an interpreter, no counters readable by every user.
    assert "setcap" not in fix and "a+r" not in fix and "o+r" not in fix


def test_all_counters_unreadable_is_said_plainly(fake: FakePowercap) -> None:
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        fake.chmod(zone, 0o000)
    data = _info_without_read_permission(fake.root)
    assert data["measured"] is False
    assert [p["kind"] for p in _powercap(data["problems"])] == ["permission"] * 3
