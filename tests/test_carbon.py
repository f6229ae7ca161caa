"""Intensity lookups, layered settings, live data against a local stub, emissions and advice."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

import carbonfast as cf
from carbonfast.carbon import emissions_kg, tables
from carbonfast.carbon.intensity import by_cloud, by_country, by_zone, lookup
from carbonfast.config import CARBON_KEYS, SETTINGS
from tests.fakes.powercap import FakePowercap


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch, tmp_path: Path) -> None:
    """Tests start from defaults: no carbon variables, no config file, a private cache."""
    for key in (*CARBON_KEYS, "config"):
        monkeypatch.delenv(
            SETTINGS[key].env if key in SETTINGS else "CARBONFAST_CONFIG", raising=False
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- lookups -----------------------------------------------------------------------------------


def test_country_by_alpha2_alpha3_any_case_reads_the_ember_table() -> None:
    row = tables.countries()["countries"]["FRA"]
    for code in ("FR", "FRA", "fr"):
        it = by_country(code)
        assert it.g_per_kwh == row["g_per_kwh"]
        assert it.kind == "country"
        assert f"Ember {row['year']}" in it.source and "CC BY-SA 4.0" in it.source


def test_zone_reads_the_electricity_maps_table() -> None:
    row = tables.zones()["zones"]["US-CAL-CISO"]
    it = by_zone("US-CAL-CISO")
    assert it.g_per_kwh == row["g_per_kwh"]
    assert "Electricity Maps" in it.source and "ODbL" in it.source
    assert it.country == "USA"


def test_a_cloud_region_takes_its_grid_zone() -> None:
    region = tables.cloud()["providers"]["gcp"]["europe-west1"]
    it = by_cloud("gcp:europe-west1")
    assert region["zone"] == "BE"
    assert it.g_per_kwh == tables.zones()["zones"]["BE"]["g_per_kwh"]
    assert it.location == "gcp:europe-west1" and it.kind == "cloud"


def test_the_most_specific_place_wins_and_the_world_average_says_so() -> None:
    assert lookup(country="FR", zone="DE", g_per_kwh=12).g_per_kwh == 12
    assert lookup(country="FR", zone="DE").location == "DE"
    assert lookup(country="FR", cloud="gcp:us-west1").kind == "cloud"
    world = lookup()
    assert world.g_per_kwh == tables.countries()["regions"]["World"]["g_per_kwh"]
    assert "world average" in world.source and "no location configured" in world.note


@pytest.mark.parametrize(
    ("call", "nearest"),
    [
        (lambda: by_country("FRX"), "FRA (France)"),
        (lambda: by_country("Germany"), "DEU (Germany)"),
        (lambda: by_zone("US-CAL"), "US-CAL-CISO"),
        (lambda: by_cloud("gcp:europe-west99"), "gcp:europe-west9 (Paris)"),
        (lambda: by_cloud("oracle:eu-frankfurt-1"), "provider from gcp, aws, azure"),
    ],
)
def test_unknown_names_list_the_nearest_matches(call, nearest: str) -> None:
    with pytest.raises(ValueError, match="unknown") as e:
        call()
    assert nearest in str(e.value)


@pytest.mark.parametrize(
    ("spec", "zone"),
    [
        ("aws:us-east-1", "US-MIDA-PJM"),  # Ashburn, Virginia
        ("aws:eu-west-3", "FR"),
        ("aws:ap-south-1", "IN-WE"),  # Mumbai
        ("azure:westeurope", "NL"),
        ("azure:westus2", "US-NW-GCPD"),  # Quincy, Washington
        ("azure:westcentralus", "US"),  # no balancing area can be told: the country
    ],
)
def test_aws_and_azure_regions_take_the_grid_zone_of_their_location(spec: str, zone: str) -> None:
    it = by_cloud(spec)
    assert (it.kind, it.location, it.zone) == ("cloud", spec, zone)
    assert it.g_per_kwh == tables.zones()["zones"][zone]["g_per_kwh"]
    assert "Electricity Maps" in it.source


def test_aws_and_azure_regions_carry_their_own_country_and_no_dated_figure() -> None:
    providers = tables.cloud()["providers"]
    assert len(providers["aws"]) == 22 and len(providers["azure"]) == 32
    # The source file gives USA as the code of every AWS region, Mumbai's and Tokyo's too.
    assert providers["aws"]["ap-south-1"]["country"] == "IND"
    assert providers["aws"]["ap-northeast-1"]["country"] == "JPN"
    assert providers["aws"]["ap-east-1"]["country"] == "HKG"
    countries = tables.countries()["countries"]
    for provider in ("aws", "azure"):
        for region, row in providers[provider].items():
            assert row["country"] in countries, (provider, region)
            assert row["zone"] in tables.zones()["zones"], (provider, region)
            # Their impact figures date from 2018-2019: the grid of the location is used.
            assert row["provider_g_per_kwh"] is None, (provider, region)
    assert "licence" in tables.cloud() and "CodeCarbon" in tables.cloud()["source"]


def test_an_unknown_region_lists_the_nearest_of_its_own_provider() -> None:
    with pytest.raises(ValueError, match="unknown cloud region 'aws:us-east-9'") as e:
        by_cloud("aws:us-east-9")
    nearest = str(e.value).split("nearest: ")[1].split(". Accepted")[0]
    assert "aws:us-east-1" in nearest and "aws:us-east-2" in nearest
    assert "gcp:" not in nearest and "azure:" not in nearest
    with pytest.raises(ValueError, match="azure:westeurope"):
        by_cloud("azure:west-europe")


def test_a_region_without_its_provider_is_told_which_provider_has_it() -> None:
    with pytest.raises(ValueError, match="needs its provider") as e:
        by_cloud("westeurope")
    assert "did you mean azure:westeurope?" in str(e.value)


# -- settings ----------------------------------------------------------------------------------


def test_layers_argument_over_environment_over_file_over_default(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.carbonfast]\ncountry = "DE"\npue = 1.3\n')
    sub = tmp_path / "project" / "src"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # the file is found from a subdirectory
    none = tmp_path / "no-rapl"
    assert cf.Meter(none).carbon.table.location == "DE"
    assert cf.Meter(none).carbon.pue == 1.3
    monkeypatch.setenv("CARBONFAST_COUNTRY", "FR")
    assert cf.Meter(none).carbon.table.location == "FR"
    assert cf.Meter(none, country="SE").carbon.table.location == "SE"
    assert cf.Meter(none, pue=1.1).carbon.pue == 1.1


def test_carbonfast_toml_and_an_explicit_config(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "carbonfast.toml").write_text('zone = "US-CAL-CISO"\n')
    assert cf.Meter(tmp_path / "x").carbon.table.location == "US-CAL-CISO"
    other = tmp_path / "elsewhere.toml"
    other.write_text("intensity = 99\n")
    monkeypatch.setenv("CARBONFAST_CONFIG", str(other))
    assert cf.Meter(tmp_path / "x").carbon.table.g_per_kwh == 99


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pue = 0.5\n", "carbonfast.toml: pue='0.5' is not valid; expected a power usage"),
        ("intensity = -1\n", "intensity='-1' is not valid; expected g CO2e per kWh"),
        ("contry = 'FR'\n", "unknown setting contry; accepted: source, gpu, gpu_energy"),
        ("country = [\n", "cannot read it as TOML"),
    ],
)
def test_bad_file_values_name_the_file_and_setting(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "carbonfast.toml").write_text(content)
    with pytest.raises(ValueError, match=r"carbonfast\.toml") as e:
        cf.Meter(tmp_path / "x")
    assert message in str(e.value)


def test_bad_environment_values_name_the_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CARBONFAST_PUE", "high")
    with pytest.raises(ValueError, match="CARBONFAST_PUE='high' is not valid"):
        cf.Meter(tmp_path / "x")


def test_an_argument_or_variable_beats_any_place_in_a_config_file(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.carbonfast]\ncloud = "gcp:europe-west1"\n')
    none = tmp_path / "no-rapl"
    assert cf.Meter(none).carbon.table.location == "gcp:europe-west1"
    by_argument = cf.Meter(none, country="DE").carbon.table
    assert (by_argument.kind, by_argument.location) == ("country", "DE")
    assert by_argument.note == (
        'cloud = "gcp:europe-west1" in pyproject.toml is not used: '
        "country='DE' overrides it (an argument beats a config file)"
    )
    monkeypatch.setenv("CARBONFAST_COUNTRY", "SE")
    by_variable = cf.Meter(none).carbon.table
    assert (by_variable.kind, by_variable.location) == ("country", "SE")
    assert "CARBONFAST_COUNTRY=SE overrides it (the environment beats a config file)" in (
        by_variable.note or ""
    )
    # An argument beats a variable too, even one naming a more specific kind of place.
    monkeypatch.setenv("CARBONFAST_ZONE", "FR")
    assert cf.Meter(none, country="DE").carbon.table.location == "DE"


def test_a_token_is_never_written_into_a_settings_label(tmp_path: Path, monkeypatch) -> None:
    from carbonfast.config import resolve

    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret-token")
    settings = resolve(CARBON_KEYS, {})
    assert settings["electricitymaps_token"] == "secret-token"
    assert settings.origins["electricitymaps_token"].label == "CARBONFAST_ELECTRICITYMAPS_TOKEN"
    assert "secret-token" not in repr(settings.origins)


def test_within_one_layer_the_most_specific_place_wins_and_says_what_it_beat(
    tmp_path: Path,
) -> None:
    table = cf.Meter(tmp_path / "x", country="FR", zone="DE").carbon.table
    assert (table.kind, table.location) == ("zone", "DE")
    assert table.note == "country='FR' is not used: zone='DE' is more specific"


def test_the_source_names_the_setting_that_chose_it(tmp_path: Path, monkeypatch) -> None:
    none = tmp_path / "x"
    ember_year = tables.countries()["countries"]["FRA"]["year"]
    zone_year = tables.zones()["zones"]["FR"]["year"]
    assert cf.Meter(none, country="FR").carbon.table.source.startswith(
        f"country='FR': Ember {ember_year}, France (FRA)"
    )
    monkeypatch.setenv("CARBONFAST_ZONE", "FR")
    zone = cf.Meter(none).carbon.table
    assert zone.source.startswith(f"CARBONFAST_ZONE=FR: Electricity Maps {zone_year} yearly")
    assert zone.label == f"zone FR, Electricity Maps {zone_year}"
    monkeypatch.delenv("CARBONFAST_ZONE")
    project = tmp_path / "project"  # a directory of its own: the file found is cached by it
    project.mkdir()
    (project / "carbonfast.toml").write_text('cloud = "aws:eu-west-3"\n')
    monkeypatch.chdir(project)
    cloud = cf.Meter(none).carbon.table
    assert cloud.source.startswith('cloud = "aws:eu-west-3" in carbonfast.toml: aws:eu-west-3')
    explicit = cf.Meter(none, intensity=250).carbon.table
    assert (explicit.source, explicit.label) == ("intensity=250: set by user", "set by user")


# -- emissions ---------------------------------------------------------------------------------


def test_measurement_emissions_are_energy_times_pue_times_intensity(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, country="FR", pue=1.2)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 36_000_000)  # 36 J = 0.01 Wh
    g = tables.countries()["countries"]["FRA"]["g_per_kwh"]
    assert m.emissions_kg == pytest.approx(36 / 3.6e6 * 1.2 * g / 1000, rel=1e-12)
    assert m.emissions_kg == emissions_kg(36.0, g, 1.2)
    assert (m.intensity_g_per_kwh, m.location, m.pue) == (g, "FR", 1.2)
    assert m.emissions_range_kg == (m.emissions_kg, m.emissions_kg)
    d = m.to_dict()
    assert d["emissions_kg"] == m.emissions_kg and d["intensity_source"] == m.intensity_source


def test_unknown_energy_means_unknown_emissions(tmp_path: Path) -> None:
    with cf.Meter(tmp_path / "none", estimate=False).measure() as m:
        pass
    assert m.emissions_kg is None and m.emissions_range_kg is None


# -- live intensity ----------------------------------------------------------------------------


class _Stub:
    """A local stand-in for the Electricity Maps API."""

    def __init__(self, value: float = 123.0, status: int = 200) -> None:
        self.requests: list[tuple[str, str | None]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append((self.path, self.headers.get("auth-token")))
                body = json.dumps(
                    {"zone": "FR", "carbonIntensity": value, "datetime": "2026-11-27T15:00Z"}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local server answering with `handler`; yields its base URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub():
    s = _Stub()
    yield s
    s.close()


def test_live_intensity_with_a_token_is_fetched_once_and_cached(
    fake: FakePowercap, stub: _Stub, monkeypatch
) -> None:
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", stub.url)
    for _ in range(2):
        with cf.Meter(fake.root, country="FR").measure() as m:
            fake.add("intel-rapl:0", 1_000_000)
        assert m.intensity_g_per_kwh == 123.0
        assert m.intensity.kind == "live"
        assert "live API, zone FR" in m.intensity_source
    assert stub.requests == [("/v3/carbon-intensity/latest?zone=FR", "secret")]


def test_offline_live_intensity_falls_back_to_the_table_and_says_so(
    fake: FakePowercap, monkeypatch
) -> None:
    dead = _Stub()
    url = dead.url
    dead.close()  # nothing listens there now
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", url)
    with cf.Meter(fake.root, zone="FR").measure() as m:
        pass
    assert m.intensity_g_per_kwh == tables.zones()["zones"]["FR"]["g_per_kwh"]
    assert any("live intensity unavailable" in n and "yearly table" in n for n in m.notes)


def test_no_network_without_a_token(fake: FakePowercap, stub: _Stub, monkeypatch) -> None:
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", stub.url)
    with cf.Meter(fake.root, country="FR").measure() as m:
        pass
    assert m.intensity.kind == "country"
    assert stub.requests == []


# -- advice ------------------------------------------------------------------------------------


def test_advice_figures_follow_from_energy_place_and_pue(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, cloud="gcp:us-east1", pue=1.1)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 360_000_000)  # 360 J = 0.1 kWh / 1000
    advice = cf.advise(m)
    places = [a for a in advice if a.kind == "location"]
    assert 1 <= len(places) <= 3
    here = m.intensity_g_per_kwh
    previous = 0.0
    for a in places:
        f = a.figures
        assert f["place"].startswith("gcp:")  # the same provider's regions
        assert f["g_per_kwh"] < here and f["g_per_kwh"] >= previous
        previous = f["g_per_kwh"]
        assert f["emissions_kg"] == pytest.approx(emissions_kg(360.0, f["g_per_kwh"], 1.1))
        assert f["saved_kg"] == pytest.approx(m.emissions_kg - f["emissions_kg"])
        assert f["place"] in a.message
    [eq] = [a for a in advice if a.kind == "equivalent"]
    assert eq.figures["car_km"] == pytest.approx(m.emissions_kg * 1000 / eq.figures["car_g_per_km"])
    assert "epa.gov" in eq.figures["source"]


def test_idle_advice_follows_the_cpu_time_given(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, country="FR")
    with meter.measure() as m:
        fake.add("intel-rapl:0", 10_000_000)  # 10 J package
        fake.add("intel-rapl:0:1", 2_000_000)  # 2 J DRAM, always on
    busy = {a.kind: a for a in cf.advise(m, cpu_seconds=m.duration_s * 4, threads=4)}["idle"]
    idle = {a.kind: a for a in cf.advise(m, cpu_seconds=0.0, threads=4)}["idle"]
    assert busy.figures["utilisation"] == 1.0
    r = 0.12 / 1.02
    assert busy.figures["idle_energy_j"] == pytest.approx(10 * r + 2)
    assert idle.figures["idle_energy_j"] == pytest.approx(12.0)  # nothing but idle draw
    assert idle.figures["idle_share"] == pytest.approx(1.0)
    # Measured packages have no curve of their own: the share is a typical CPU's, said so.
    method = busy.figures["method"]
    assert "package-0: measured" in method and "typical" in method
    assert "estimate" not in method


def _vm_proc(tmp_path: Path) -> Path:
    """A /proc of a VM whose CPU model is not in the TDP table: the per-thread fallback."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "cpuinfo").write_text("processor : 0\nmodel name : Mystery CPU\nflags : hypervisor\n")
    (proc / "meminfo").write_text("MemTotal: 4000000 kB\n")
    return proc


def test_idle_advice_takes_the_curve_the_estimate_used(tmp_path: Path) -> None:
    meter = cf.Meter(tmp_path / "no-rapl", proc_root=_vm_proc(tmp_path), cpu_threads=4)
    with meter.measure() as m:
        time.sleep(0.05)
    [idle] = [a for a in cf.advise(m, cpu_seconds=m.duration_s * 4, threads=4) if a.kind == "idle"]
    # Fully busy, the idle share of the CPU's energy is the curve's idle over full-load power:
    # Cloud Carbon Footprint's 0.74 W against 3.5 W per thread, not the TDP curve's 12/102.
    cpu_j, ram_j = m.domains["cpu"], m.domains["ram"]
    assert idle.figures["idle_energy_j"] == pytest.approx(cpu_j * 0.74 / 3.5 + ram_j, rel=1e-3)
    method = idle.figures["method"]
    assert "cpu: the estimate's per-thread watts curve, 2.96 W idle to 14 W at full load" in method
    assert "CPU model not in the TDP table" in method and "TDP curve" not in method
    assert method in idle.message


def test_idle_advice_on_a_tdp_curve_quotes_its_tdp(tmp_path: Path) -> None:
    meter = cf.Meter(tmp_path / "no-rapl", proc_root=_vm_proc(tmp_path), cpu_tdp_w=100)
    with meter.measure() as m:
        time.sleep(0.05)
    [idle] = [a for a in cf.advise(m, cpu_seconds=m.duration_s, threads=1) if a.kind == "idle"]
    cpu_j, ram_j = m.domains["cpu"], m.domains["ram"]
    assert idle.figures["idle_energy_j"] == pytest.approx(cpu_j * 0.12 / 1.02 + ram_j, rel=1e-3)
    assert "TDP curve, 12 W idle to 102 W at full load" in idle.figures["method"]
    assert "TDP 100 per socket (set by user)" in idle.figures["method"]


def test_idle_advice_does_not_split_a_fixed_cpu_power(tmp_path: Path) -> None:
    meter = cf.Meter(tmp_path / "no-rapl", cpu_power_w=10, ram_power_w=1)
    with meter.measure() as m:
        time.sleep(0.05)
    [idle] = [a for a in cf.advise(m, cpu_seconds=0.0, threads=4) if a.kind == "idle"]
    # A fixed power is the same idle or busy: it says nothing of idle draw, so only the
    # memory is counted, and no curve is quoted.
    assert idle.figures["idle_energy_j"] == pytest.approx(m.domains["ram"])
    method = idle.figures["method"]
    assert "fixed power set by the user" in method and "curve" not in method


def test_a_country_is_compared_with_its_own_zones_and_cloud_regions(fake: FakePowercap) -> None:
    with cf.Meter(fake.root, zone="US-TEX-ERCO").measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    places = [a.figures["place"] for a in cf.advise(m, top=50) if a.kind == "location"]
    assert places and all(p.startswith(("US-", "gcp:", "aws:", "azure:")) for p in places)
    assert any(p.startswith("US-") for p in places)


def _location_advice(**place: str) -> list:
    meter = cf.Meter(Path("no-rapl"), cpu_power_w=100, ram_power_w=10, **place)
    with meter.measure() as m:
        time.sleep(0.01)
    return [a for a in cf.advise(m, top=100) if a.kind == "location"]


def test_advice_on_an_ember_country_compares_ember_figures() -> None:
    places = _location_advice(country="FR")
    here = tables.countries()["countries"]["FRA"]["g_per_kwh"]
    regions = {
        f"{p}:{r}": row for p, rs in tables.cloud()["providers"].items() for r, row in rs.items()
    }
    assert places
    # Paris is 31 g/kWh in Electricity Maps' table against France's 44 in Ember's: not a
    # saving of moving the work, only of changing the dataset.
    assert not {"gcp:europe-west9", "aws:eu-west-3"} & {a.figures["place"] for a in places}
    for a in places:
        f = a.figures
        ember = tables.countries()["countries"][regions[f["place"]]["country"]]["g_per_kwh"]
        assert f["g_per_kwh"] == ember < here
        assert f["dataset"] == "Ember" and "Ember" in a.message


def test_advice_on_an_electricity_maps_zone_compares_zone_figures() -> None:
    places = _location_advice(zone="DE")
    zones = tables.zones()["zones"]
    regions = {
        f"{p}:{r}": row for p, rs in tables.cloud()["providers"].items() for r, row in rs.items()
    }
    assert places
    for a in places:
        f = a.figures
        assert f["dataset"] == "Electricity Maps"
        zone = regions[f["place"]]["zone"] if ":" in f["place"] else f["place"]
        assert f["g_per_kwh"] == zones[zone]["g_per_kwh"] < zones["DE"]["g_per_kwh"]


# -- the command -------------------------------------------------------------------------------


def _run(
    fake: FakePowercap, tmp_path: Path, *flags: str
) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "r.json"
    bump = (
        f"p={str(fake.path('intel-rapl:0'))!r}; v=int(open(p).read()); "
        "open(p,'w').write(str(v+7200000))"
    )
    cli = [sys.executable, "-m", "carbonfast.cli", *flags, "run", "--json", str(report), "--"]
    out = subprocess.run(
        [*cli, sys.executable, "-c", bump],
        env={**os.environ, "CARBONFAST_POWERCAP_ROOT": str(fake.root)},
        capture_output=True,
        text=True,
        check=False,
    )
    return out, (json.loads(report.read_text()) if report.exists() else {})


@pytest.mark.parametrize(
    ("flags", "g_per_kwh", "pue"),
    [
        (("--country", "FR"), lambda: tables.countries()["countries"]["FRA"]["g_per_kwh"], 1.0),
        (("--cloud", "gcp:europe-west1"), lambda: tables.zones()["zones"]["BE"]["g_per_kwh"], 1.0),
        (("--intensity", "250", "--pue", "1.2"), lambda: 250.0, 1.2),
    ],
)
def test_run_reports_energy_times_pue_times_intensity(
    fake: FakePowercap, tmp_path: Path, flags, g_per_kwh, pue
) -> None:
    out, data = _run(fake, tmp_path, *flags)
    assert out.returncode == 0, out.stderr
    assert data["energy_j"] == 7.2
    assert data["emissions_kg"] == pytest.approx(7.2 / 3.6e6 * pue * g_per_kwh() / 1000, rel=1e-12)
    assert data["pue"] == pue
    assert "emissions" in out.stderr and "g/kWh" in out.stderr
    assert any(a["kind"] == "equivalent" for a in data["advice"])
    assert "advice:" in out.stderr


def test_run_with_an_unknown_country_fails_clearly(fake: FakePowercap, tmp_path: Path) -> None:
    out, data = _run(fake, tmp_path, "--country", "XY")
    assert out.returncode == 2
    assert "unknown country 'XY'" in out.stderr and "Accepted" in out.stderr
    assert data == {}  # the command never ran


def test_run_labels_an_explicit_intensity_as_set_by_user(
    fake: FakePowercap, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CARBONFAST_HISTORY", str(tmp_path / "history.sqlite"))
    out, data = _run(fake, tmp_path, "--intensity", "250", "--pue", "1.2")
    assert out.returncode == 0, out.stderr
    assert "(set by user: 250 g/kWh x PUE 1.2)" in out.stderr
    assert "world average" not in out.stderr
    assert data["intensity_source"] == "--intensity 250: set by user"
    stored = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "report", str(data["id"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "(set by user: 250 g/kWh x PUE 1.2)" in stored.stdout, stored.stderr


def test_run_tells_a_countrys_ember_figure_from_its_electricity_maps_zone(
    fake: FakePowercap, tmp_path: Path
) -> None:
    ember_year = tables.countries()["countries"]["FRA"]["year"]
    zone_year = tables.zones()["zones"]["FR"]["year"]
    out, data = _run(fake, tmp_path, "--country", "FR")
    assert f"(FR, Ember {ember_year}: " in out.stderr
    assert data["intensity_source"].startswith(f"--country FR: Ember {ember_year}, France")
    out, data = _run(fake, tmp_path, "--zone", "FR")
    assert f"(zone FR, Electricity Maps {zone_year}: " in out.stderr
    assert data["intensity_source"].startswith(f"--zone FR: Electricity Maps {zone_year}")


def test_run_with_an_argument_over_a_config_file_cloud_notes_the_override(
    fake: FakePowercap, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.carbonfast]\ncloud = "gcp:europe-west1"\n')
    out, data = _run(fake, tmp_path, "--country", "DE")
    assert out.returncode == 0, out.stderr
    assert data["location"] == "DE"
    assert data["intensity_g_per_kwh"] == tables.countries()["countries"]["DEU"]["g_per_kwh"]
    override = 'cloud = "gcp:europe-west1" in pyproject.toml is not used: --country DE overrides it'
    assert any(n.startswith(override) for n in data["notes"])
    assert override in out.stderr


@pytest.mark.parametrize(
    ("spec", "zone"), [("aws:us-east-1", "US-MIDA-PJM"), ("azure:westeurope", "NL")]
)
def test_run_in_an_aws_or_azure_region(fake: FakePowercap, tmp_path: Path, spec, zone) -> None:
    out, data = _run(fake, tmp_path, "--cloud", spec)
    assert out.returncode == 0, out.stderr
    assert data["location"] == spec
    assert data["intensity_g_per_kwh"] == tables.zones()["zones"][zone]["g_per_kwh"]
    assert data["intensity_source"].startswith(f"--cloud {spec}: {spec} ")
    provider = spec.split(":")[0]
    places = [a["figures"]["place"] for a in data["advice"] if a["kind"] == "location"]
    assert places and all(p.startswith(f"{provider}:") for p in places)


@pytest.mark.parametrize("value", [float("nan"), -5.0, 1e308, "lots"])
def test_a_live_figure_no_grid_can_have_is_refused(
    fake: FakePowercap, monkeypatch, value: object
) -> None:
    bad = _Stub(value=value)  # type: ignore[arg-type]
    try:
        monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
        monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", bad.url)
        with cf.Meter(fake.root, zone="FR").measure() as m:
            pass
        assert m.intensity_g_per_kwh == tables.zones()["zones"]["FR"]["g_per_kwh"]
        assert "NaN" not in json.dumps(m.to_dict())
    finally:
        bad.close()


def test_a_cache_entry_dated_in_the_future_or_garbage_is_not_trusted(
    fake: FakePowercap, stub: _Stub, monkeypatch, tmp_path: Path
) -> None:
    from carbonfast.carbon import live

    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
    monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", stub.url)
    cache = live.cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    key = f"{stub.url}|FR"
    future = {"g_per_kwh": 999.0, "datetime": "x", "fetched_at": time.time() + 1e9}
    for planted in ({key: future}, [1, 2], {key: "garbage"}):
        cache.write_text(json.dumps(planted))
        with cf.Meter(fake.root, zone="FR").measure() as m:
            pass
        assert m.intensity_g_per_kwh == 123.0  # asked anew
        cache.unlink()


def test_the_token_is_not_sent_on_after_a_redirect(fake: FakePowercap, monkeypatch) -> None:
    elsewhere = _Stub()
    seen: list[str | None] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("auth-token"))
            self.send_response(302)
            self.send_header("Location", f"{elsewhere.url}/carbon-intensity/latest?zone=FR")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    try:
        with serving(Redirect) as url:
            monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
            monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", url)
            with cf.Meter(fake.root, zone="FR").measure() as m:
                pass
            assert any("redirected" in n for n in m.notes)  # (the lookup happens here)
            assert seen == ["secret"] and elsewhere.requests == []
    finally:
        elsewhere.close()


def test_a_server_that_trickles_its_answer_is_given_up_on_in_time(
    fake: FakePowercap, monkeypatch
) -> None:
    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                for byte in b'{"carbonIntensity": 100}':
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Trickle) as url:
        monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_TOKEN", "secret")
        monkeypatch.setenv("CARBONFAST_ELECTRICITYMAPS_URL", url)
        t0 = time.monotonic()
        with cf.Meter(fake.root, zone="FR").measure() as m:
            pass
        assert m.intensity_g_per_kwh == tables.zones()["zones"]["FR"]["g_per_kwh"]
        assert time.monotonic() - t0 < 6  # 2 s allowed; the trickle would take 12 s
