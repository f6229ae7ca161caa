"""One record of what was measured: a run, a window, a task or a benchmark.

It is built once (from a Measurement, a run, a benchmark result, or a stored dict) and every
output reads it: the console, JSON, the CodeCarbon CSV, HTML, the history and the CodeCarbon
drop-in. It carries which domains count in the total, so that no output has to guess.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypedDict

from carbonfast import kinds
from carbonfast._typing import PartName

# "windows": one label's windows added up (the history's default for windows).
Kind = Literal["run", "window", "windows", "task", "bench"]
KINDS: tuple[Kind, ...] = ("run", "window", "windows", "task", "bench")


@dataclass(frozen=True)
class DomainRecord:
    """One domain's energy in a record."""

    # None: unknown (a read of it failed or did not answer during the window).
    energy_j: float | None
    kind: str
    estimated: bool
    # Whether the record's energy_j adds this domain (core, uncore and psys beside packages
    # are inside others; a counter that never moved, or that failed, is left out).
    in_total: bool = True
    energy_range_j: tuple[float, float] | None = None
    interpolated: bool = False
    method: str | None = None
    # The CodeCarbon part ("cpu", "gpu", "ram") its energy is reported in, as the core's
    # domain rules said when it was measured; None: no part (it covers or sits inside others).
    part: str | None = None
    # A counter that never moved: no measured 0, so its part is unknown.
    stalled: bool = False
    # An estimate that stood in for RAPL counters that all stood still (a frozen RAPL).
    standby: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "energy_j": self.energy_j,
            "kind": self.kind,
            "estimated": self.estimated,
            "part": self.part,
        }
        if self.energy_range_j is not None:
            out["energy_range_j"] = list(self.energy_range_j)
        if self.interpolated:
            out["interpolated"] = True
        if self.method is not None:
            out["method"] = self.method
        if self.stalled:
            out["stalled"] = True
        if self.standby:
            out["standby"] = True
        return out


PARTS: tuple[PartName, ...] = typing.get_args(PartName)


class AdviceEntry(TypedDict):
    """One piece of advice as a record keeps it (carbonfast.carbon.advice.Advice, stored)."""

    # "location", "idle" or "equivalent".
    kind: str
    message: str
    figures: dict[str, Any]


class Trace(TypedDict):
    """A run's power trace as the history keeps it: seconds since the start, and each
    domain's watts at those times (None where unknown)."""

    t_s: list[float]
    power_w: dict[str, list[float | None]]


def domain_records(domains: Any, w: Any) -> dict[str, DomainRecord]:
    """Each domain of a native window `w` (of a meter whose domains are `domains`) as the
    record has it: a domain that failed, or whose counter never moved, is unknown and out of
    the total, never 0; a standby estimate is there only where it stood in for them."""
    out = {}
    for d, j, lo, hi, interp, stalled, failed, counted in zip(
        domains,
        w.joules,
        w.joules_low,
        w.joules_high,
        w.interpolated,
        w.stalled,
        w.failed,
        w.counted,
        strict=True,
    ):
        if d.standby and not counted:
            continue
        unknown = bool(failed or stalled)
        out[d.name] = DomainRecord(
            energy_j=None if unknown else j,
            kind=d.kind,
            estimated=d.estimated,
            in_total=bool(counted),
            energy_range_j=(lo, hi)
            if not unknown and (d.estimated or interp or lo != hi)
            else None,
            interpolated=bool(interp) and not unknown,
            method=d.method if d.estimated else None,
            part=d.part,
            stalled=bool(stalled),
            standby=d.standby,
        )
    return out


@dataclass
class Attributed:
    """The share of a measurement's energy that belongs to its scope (a command's process
    tree, a process, a thread, a cgroup), beside the machine's `energy_j`."""

    # None where nothing measured could be shared (every counted domain unknown).
    energy_j: float | None
    # The scope's share of the machine's CPU time, 0 to 1 (None: no CPU time ran at all).
    share: float | None
    # The scope in words: "process tree of 4312", "cgroup /slurm/job_1234".
    scope: str
    # How the share was found, in words.
    method: str
    range_j: tuple[float, float] | None = None
    # The share of the energy above the idle baseline, where one is known, and how.
    dynamic_j: float | None = None
    baseline: str | None = None
    # CPU seconds of the scope and of the whole machine in the window.
    cpu_s: float | None = None
    machine_cpu_s: float | None = None
    # Per domain in the total: the joules attributed (None: unknown), and the share used.
    domains: dict[str, float | None] = field(default_factory=dict)
    shares: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "energy_j": self.energy_j,
            "share": self.share,
            "scope": self.scope,
            "method": self.method,
            "range_j": list(self.range_j) if self.range_j else None,
        }
        if self.dynamic_j is not None:
            out["dynamic_j"] = self.dynamic_j
            out["baseline"] = self.baseline
        out["cpu_s"] = self.cpu_s
        out["machine_cpu_s"] = self.machine_cpu_s
        out["domains"] = dict(self.domains)
        out["shares"] = dict(self.shares)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attributed:
        def number(v: Any) -> float | None:
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        rng = d.get("range_j")
        bounds = [number(x) for x in rng] if isinstance(rng, list) and len(rng) == 2 else []
        low, high = bounds if len(bounds) == 2 else (None, None)

        def numbers(x: Any) -> dict[str, float | None]:
            return {str(k): number(v) for k, v in x.items()} if isinstance(x, dict) else {}

        return cls(
            energy_j=number(d.get("energy_j")),
            share=number(d.get("share")),
            scope=str(d.get("scope") or ""),
            method=str(d.get("method") or ""),
            range_j=(low, high) if low is not None and high is not None else None,
            dynamic_j=number(d.get("dynamic_j")),
            baseline=d.get("baseline") if isinstance(d.get("baseline"), str) else None,
            cpu_s=number(d.get("cpu_s")),
            machine_cpu_s=number(d.get("machine_cpu_s")),
            domains=numbers(d.get("domains")),
            shares=numbers(d.get("shares")),
        )


@dataclass
class Record:
    """A measurement as every output sees it. `energy_j` is None, never 0, when unknown."""

    kind: Kind
    started_at: str
    duration_s: float
    energy_j: float | None
    label: str | None = None
    energy_range_j: tuple[float, float] | None = None
    estimated: bool = False
    partial: bool = False
    emissions_kg: float | None = None
    emissions_range_kg: tuple[float, float] | None = None
    intensity_g_per_kwh: float | None = None
    intensity_source: str = ""
    # How the summary names the intensity's place: the setting, dataset and year, or "set by
    # user" (location alone is "FR" for Ember's country and Electricity Maps' zone alike).
    intensity_label: str | None = None
    location: str | None = None
    country: str | None = None
    pue: float | None = None
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    command: list[str] | None = None
    exit_code: int | None = None
    cpu_seconds: float | None = None
    advice: list[AdviceEntry] = field(default_factory=list)
    bench: dict[str, Any] | None = None
    # For "windows": count, min/mean/max energy, first and last time.
    sums: dict[str, Any] | None = None
    # In a distributed job: its id, and the host, rank and world size of the rank that made
    # the record. A rank's record holds its own part; rank 0's record of a gathered window
    # holds the whole job, broken down by host and by rank, and names the missing ranks.
    job_id: str | None = None
    host: str | None = None
    rank: int | None = None
    world_size: int | None = None
    # The share of energy_j that is the scope's own (a command's, a process's), where asked.
    attributed: Attributed | None = None
    hosts: dict[str, dict[str, Any]] | None = None
    ranks: list[dict[str, Any]] | None = None
    missing_ranks: list[int] | None = None
    carbonfast_version: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.carbonfast_version:
            from carbonfast import __version__

            self.carbonfast_version = __version__

    @property
    def power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s

    @property
    def total_domains(self) -> list[str]:
        """The domains energy_j sums."""
        return [name for name, d in self.domains.items() if d.in_total]

    @property
    def title(self) -> str:
        """What ran: the command line, else the label."""
        if self.command:
            import shlex

            return shlex.join(self.command)
        return self.label or ""

    def energy_by_kind(self, attributed: bool = False) -> dict[str, float | None]:
        """The energy of each CodeCarbon part (cpu, gpu, ram) as what measured it says, the
        part each domain belongs to being the core's rule, stored with the domain. A part is
        None (unknown, never 0) where nothing measured it, or where a domain of it is unknown
        (a read failed, a counter never moved, its share is not known). Under a meter of the
        whole machine the parts need not add up to energy_j: it is the meter's.
        `attributed`: the scope's share of each part."""
        shares = self.attributed.domains if attributed and self.attributed else None
        out: dict[str, float | None] = {}
        for part in PARTS:
            of_part = [(name, d) for name, d in self.domains.items() if d.part == part]
            if any(d.standby and d.in_total for _, d in of_part):
                # An estimate stood in for the part's frozen counters: it is the figure.
                of_part = [(name, d) for name, d in of_part if not d.stalled]
            energies = [
                None if d.stalled else d.energy_j if shares is None else shares.get(name)
                for name, d in of_part
            ]
            known = [e for e in energies if e is not None]
            out[part] = sum(known) if energies and len(known) == len(energies) else None
        return out

    # Building ----------------------------------------------------------------------------

    @classmethod
    def from_measurement(cls, m: Any, kind: Kind = "window", *, notes: bool = True) -> Record:
        """The record of a Measurement (open windows run up to now); in a distributed job, of
        this rank's own part, tagged with the job."""
        m = m.local()
        w = m.window()
        meter = m.meter
        domains = domain_records(meter.all_domains, w)
        job = meter.job
        return cls(
            **(job.tags() if job is not None else {}),
            kind=kind,
            label=m.label,
            started_at=m.started_at,
            duration_s=w.duration_s,
            energy_j=w.total_j,
            energy_range_j=tuple(w.total_range_j) if w.total_range_j else None,
            estimated=m.estimated,
            partial=m.partial,
            **_carbon_of(m),
            domains=domains,
            notes=m.notes if notes else [],
        )

    @classmethod
    def from_job(cls, m: Any, jw: Any, kind: Kind = "window") -> Record:
        """Rank 0's record of a gathered window (`jw`, a carbonfast.distributed.JobWindow):
        the job's total, its domains named "host/domain", the breakdowns by host and by rank,
        and the ranks that are missing."""
        job = m.meter.job
        return cls(
            **job.tags(),
            kind=kind,
            label=m.label,
            started_at=m.started_at,
            duration_s=jw.duration_s,
            energy_j=jw.energy_j,
            energy_range_j=jw.energy_range_j,
            estimated=jw.estimated,
            partial=jw.partial,
            **_carbon_of(m),
            domains=dict(jw.domains),
            notes=m.notes,
            hosts={h: hp.to_dict() for h, hp in jw.hosts.items()},
            ranks=jw.ranks_list(),
            missing_ranks=list(jw.missing),
        )

    @classmethod
    def failed_run(
        cls,
        command: list[str],
        exit_code: int,
        why: str,
        started_at: str | None = None,
        duration_s: float = 0.0,
    ) -> Record:
        """A run whose measurement failed: its energy is unknown, and the note says why; its
        start and duration are the command's."""
        return cls(
            kind="run",
            command=command,
            exit_code=exit_code,
            started_at=started_at or datetime.now(timezone.utc).isoformat(),
            duration_s=duration_s,
            energy_j=None,
            notes=[f"the measurement failed during the run: {why}"],
        )

    @classmethod
    def for_bench(cls, result: Any, label: str) -> Record:
        """A benchmark: its calls' energy and time added up, the result itself kept whole.
        The energy's range is that of the calls at each end of their variant's 95% CI, and
        the emissions are counted from both as every other record's are."""
        from carbonfast.carbon import emissions_kg, emissions_range_kg

        variants = result.variants
        calls = [v.calls_per_sample * v.samples for v in variants]

        def added(per_call: list[float]) -> float:
            return sum(x * n for x, n in zip(per_call, calls, strict=True))

        total = added([v.joules_per_call for v in variants])
        seconds = added([v.seconds_per_call for v in variants])
        # The mean lies inside its CI, but a CI from an older result is not trusted for that.
        low = min(total, added([v.joules_per_call_ci[0] for v in variants]))
        high = max(total, added([v.joules_per_call_ci[1] for v in variants]))
        energy_range = (low, high) if variants else None
        g, pue = result.intensity_g_per_kwh, result.pue
        return cls(
            kind="bench",
            label=label,
            started_at=result.started_at,
            duration_s=seconds,
            energy_j=total,
            energy_range_j=energy_range,
            emissions_kg=emissions_kg(total, g, pue),
            emissions_range_kg=emissions_range_kg(energy_range, g, pue),
            estimated=result.estimated,
            intensity_g_per_kwh=result.intensity_g_per_kwh,
            intensity_source=result.intensity_source,
            pue=result.pue,
            bench=result.to_dict(),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any], kind: Kind | None = None) -> Record:
        """A record from its JSON form, as stored by any version: what is missing takes its
        default, and a domain lists in the total as `total_domains` said (all of them where
        it is absent, as older windows were stored)."""
        listed = d.get("total_domains")
        domains = {}
        for name, x in (d.get("domains") or {}).items():
            rng = x.get("energy_range_j")
            domains[name] = DomainRecord(
                energy_j=None if x.get("energy_j") is None else float(x["energy_j"]),
                kind=str(x.get("kind", "")),
                estimated=bool(x.get("estimated")),
                in_total=(
                    name in listed
                    if listed is not None
                    else kinds.counts_in_total(str(x.get("kind")))
                ),
                energy_range_j=(rng[0], rng[1]) if rng else None,
                interpolated=bool(x.get("interpolated")),
                method=x.get("method"),
                part=_part_of(x, name, listed),
                stalled=bool(x.get("stalled")),
                standby=bool(x.get("standby")),
            )
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names and k not in ("domains", "attributed")}
        if isinstance(d.get("attributed"), dict):
            values["attributed"] = Attributed.from_dict(d["attributed"])
        for pair in ("energy_range_j", "emissions_range_kg"):
            if values.get(pair):
                values[pair] = (values[pair][0], values[pair][1])
        values["kind"] = kind or d.get("kind") or ("bench" if d.get("bench") else "run")
        values.setdefault("started_at", "")
        values.setdefault("duration_s", 0.0)
        values.setdefault("energy_j", None)
        return cls(domains=domains, **values)

    # Adding up ---------------------------------------------------------------------------

    @classmethod
    def sum(cls, records: list[Record], label: str | None = None) -> Record:
        """The records added up as one (a run measured only inside its tasks, a job's parts).

        One rule for what is unknown: a figure is unknown (None, never 0) in the sum where it
        is unknown in any record, never the smaller sum of those that are known. That holds
        for the energy, the emissions, their ranges, and each domain (a domain one record
        lacks is unknown in the sum), and so for each part (cpu, gpu, ram), which its domains
        make. Durations are summed; estimated and partial hold where any record's does; the
        notes are every record's, once. Where, how and since when (kind, start, intensity,
        place, job tags) are the first record's; `label` names the sum (default: the first
        record's)."""
        if not records:
            raise ValueError("Record.sum needs at least one record")
        first = records[0]
        energy = _sum_known([r.energy_j for r in records])
        return dataclasses.replace(
            first,
            label=first.label if label is None else label,
            duration_s=sum(r.duration_s for r in records),
            energy_j=energy,
            energy_range_j=_sum_ranges([(r.energy_j, r.energy_range_j) for r in records]),
            estimated=any(r.estimated for r in records),
            partial=any(r.partial for r in records),
            emissions_kg=_sum_known([r.emissions_kg for r in records]),
            emissions_range_kg=_sum_ranges(
                [(r.emissions_kg, r.emissions_range_kg) for r in records]
            ),
            domains={
                name: _sum_domain([r.domains.get(name) for r in records])
                for name in dict.fromkeys(n for r in records for n in r.domains)
            },
            notes=list(dict.fromkeys(n for r in records for n in r.notes or ())),
            attributed=None,
            id=None,
        )

    # Output ------------------------------------------------------------------------------

    def __str__(self) -> str:
        """The summary `carbonfast run` and `carbonfast report` print."""
        from carbonfast.report.console import format_summary

        return format_summary(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import record_html

        return record_html(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: what `--json`, `report --json` and the history store."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "label": self.label,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "energy_range_j": list(self.energy_range_j) if self.energy_range_j else None,
            "power_w": self.power_w,
            "estimated": self.estimated,
            "partial": self.partial,
            "emissions_kg": self.emissions_kg,
            "emissions_range_kg": (
                list(self.emissions_range_kg) if self.emissions_range_kg else None
            ),
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "intensity_label": self.intensity_label,
            "location": self.location,
            "country": self.country,
            "pue": self.pue,
            "domains": {name: d.to_dict() for name, d in self.domains.items()},
            "total_domains": self.total_domains,
            "notes": self.notes,
            "carbonfast_version": self.carbonfast_version,
        }
        if self.kind == "run":
            out["command"] = self.command
            out["exit_code"] = self.exit_code
        if self.cpu_seconds is not None:
            out["cpu_seconds"] = self.cpu_seconds
        if self.attributed is not None:
            out["attributed"] = self.attributed.to_dict()
        if self.advice:
            out["advice"] = self.advice
        if self.bench is not None:
            out["bench"] = self.bench
        if self.sums is not None:
            out["sums"] = self.sums
        if self.world_size is not None:
            out["job_id"] = self.job_id
            out["host"] = self.host
            out["rank"] = self.rank
            out["world_size"] = self.world_size
        if self.hosts is not None:
            out["hosts"] = self.hosts
            out["ranks"] = self.ranks
            out["missing_ranks"] = self.missing_ranks or []
        if self.id is not None:
            out["id"] = self.id
        return out


def _sum_known(values: list[float | None]) -> float | None:
    """The sum, or None where any value is unknown (Record.sum's rule)."""
    known = [v for v in values if v is not None]
    return sum(known) if len(known) == len(values) else None


def _sum_ranges(
    items: list[tuple[float | None, tuple[float, float] | None]],
) -> tuple[float, float] | None:
    """The sum of (value, range) pairs as a range: None where no item has a range, or where
    a value is unknown; an item without a range is exact (value, value)."""
    if all(rng is None for _, rng in items) or any(v is None for v, _ in items):
        return None
    ranges = [rng or (v, v) for v, rng in items if v is not None]
    return (sum(lo for lo, _ in ranges), sum(hi for _, hi in ranges))


def _sum_domain(parts: list[DomainRecord | None]) -> DomainRecord:
    """One domain added up over records; unknown where a record lacks it or has it unknown."""
    present = [p for p in parts if p is not None]
    first = present[0]
    energies = [None if p is None else p.energy_j for p in parts]
    known = len(present) == len(parts)
    return dataclasses.replace(
        first,
        energy_j=_sum_known(energies),
        estimated=any(p.estimated for p in present),
        in_total=any(p.in_total for p in present),
        energy_range_j=_sum_ranges([(p.energy_j, p.energy_range_j) for p in present])
        if known
        else None,
        interpolated=any(p.interpolated for p in present),
        stalled=any(p.stalled for p in present),
        standby=any(p.standby for p in present),
    )


def _part_of(x: dict[str, Any], name: str, listed: Any) -> str | None:
    """A stored domain's part: as stored with it; for a record stored before domains carried
    one, the core's part of its kind (psys: the CPU only where it was in the total, that is,
    where no package was measured)."""
    if "part" in x:
        part = x["part"]
        return part if part in PARTS else None
    kind = str(x.get("kind"))
    if kind == "psys":
        return "cpu" if (name in listed if listed is not None else False) else None
    return kinds.part_of(kind)


def _carbon_of(m: Any) -> dict[str, Any]:
    """A measurement's emissions and the intensity they were counted at, as Record fields."""
    it = m.intensity
    return {
        "emissions_kg": m.emissions_kg,
        "emissions_range_kg": m.emissions_range_kg,
        "intensity_g_per_kwh": it.g_per_kwh,
        "intensity_source": it.source,
        "intensity_label": it.label,
        "location": it.location,
        "country": it.country,
        "pue": m.pue,
    }
