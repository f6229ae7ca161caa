"""A window of a distributed job: each rank's part (`RankPart`, sent to rank 0 as a small
tuple), and the job's window rank 0 merges from them (`JobWindow`, with its `HostPart`s)."""

from __future__ import annotations

from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from carbonfast.distributed import Job
    from carbonfast.measurement import Measurement
    from carbonfast.record import DomainRecord

# Notes a rank sends with its part, at most: the part stays one small message.
_MAX_NOTES = 16
_MAX_NOTE_CHARS = 1000


@dataclass(frozen=True)
class RankPart:
    """One rank's part of a window: the domains it measured (host domains on the elected rank
    of each host, and its own GPUs), and its notes."""

    rank: int
    host: str
    label: str | None
    duration_s: float
    # Its domains in the total added up; None where it measured none.
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    partial: bool
    measures_host: bool
    domains: dict[str, DomainRecord]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "host": self.host,
            "energy_j": self.energy_j,
            "energy_range_j": list(self.energy_range_j) if self.energy_range_j else None,
            "duration_s": self.duration_s,
            "estimated": self.estimated,
            "measures_host": self.measures_host,
            "domains": sorted(self.domains),
            "missing": False,
        }

    def to_wire(self) -> tuple[Any, ...]:
        """A compact, plain form to send (a tuple of plain values pickles in a few µs)."""
        domains = tuple(
            (
                n,
                d.energy_j,
                d.kind,
                d.estimated,
                d.in_total,
                d.energy_range_j,
                d.interpolated,
                d.method,
                d.part,
                d.stalled,
            )
            for n, d in self.domains.items()
        )
        return (
            self.rank,
            self.host,
            self.label,
            self.duration_s,
            self.energy_j,
            self.energy_range_j,
            self.estimated,
            self.partial,
            self.measures_host,
            domains,
            self.notes,
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> RankPart:
        from carbonfast.record import DomainRecord

        (
            rank,
            host,
            label,
            duration_s,
            energy_j,
            rng,
            estimated,
            partial,
            measures,
            domains,
            notes,
        ) = wire
        return cls(
            rank=rank,
            host=host,
            label=label,
            duration_s=duration_s,
            energy_j=energy_j,
            energy_range_j=rng,
            estimated=estimated,
            partial=partial,
            measures_host=measures,
            domains={n: DomainRecord(*rest) for n, *rest in domains},
            notes=tuple(notes),
        )


@dataclass
class HostPart:
    """One host's share of a job's window: the domains its ranks measured, each counted once."""

    host: str
    ranks: list[int]
    # The rank that measured the host's CPU and DRAM; None where it is not known.
    measured_by: int | None
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    domains: dict[str, DomainRecord]
    # Ranks of the host whose part did not arrive.
    missing: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_j": self.energy_j,
            "energy_range_j": list(self.energy_range_j) if self.energy_range_j else None,
            "estimated": self.estimated,
            "ranks": self.ranks,
            "measured_by": self.measured_by,
            "missing_ranks": self.missing,
            "domains": {n: d.to_dict() for n, d in self.domains.items()},
        }


@dataclass
class JobWindow:
    """A window of the whole job, on rank 0: the total over every host, with the breakdowns."""

    job_id: str | None
    world_size: int
    label: str | None
    duration_s: float
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    partial: bool
    # Domains named "host/domain", each counted once.
    domains: dict[str, DomainRecord]
    hosts: dict[str, HostPart]
    ranks: dict[int, RankPart]
    missing: list[int]
    notes: list[str]

    def ranks_list(self) -> list[dict[str, Any]]:
        """Every rank of the job, in order, the missing ones included (energy unknown)."""
        out = []
        for r in range(self.world_size):
            part = self.ranks.get(r)
            if part is not None:
                out.append(part.to_dict())
            else:
                out.append({"rank": r, "energy_j": None, "missing": True})
        return out


def rank_part(m: Measurement, job: Job) -> RankPart:
    """The closed window `m` as this rank's part of the job's window: its domains (those in
    the total, as Record has them) and its notes."""
    from carbonfast.record import domain_records

    own = m.local()
    w = own.window()
    domains = domain_records(own.meter.all_domains, w)
    rng = w.total_range_j
    return RankPart(
        rank=job.rank,
        host=job.host,
        label=m.label,
        duration_s=w.duration_s,
        energy_j=w.total_j,
        energy_range_j=(rng[0], rng[1]) if rng else None,
        estimated=own.estimated,
        partial=own.partial,
        measures_host=job.measures_host,
        domains=domains,
        notes=tuple(n[:_MAX_NOTE_CHARS] for n in own.notes[:_MAX_NOTES]),
    )


def merge(job: Job, parts: dict[int, RankPart], label: str | None) -> JobWindow:
    """The job's window from the parts that arrived: each (host, domain) counted once, the
    missing ranks named, and what their absence leaves out said."""
    missing = [r for r in range(job.world_size) if r not in parts]
    notes: list[str] = []
    hosts: dict[str, HostPart] = {}
    domains: dict[str, DomainRecord] = {}
    counted_by: dict[tuple[str, str], int] = {}
    elected = job.elected or {}
    expected = job.host_ranks or {}
    for host in sorted(set(expected) | {p.host for p in parts.values()}):
        ranks = sorted(r for r, p in parts.items() if p.host == host)
        measured_by = next((r for r in ranks if parts[r].measures_host), None)
        if measured_by is None:
            measured_by = elected.get(host)
        hosts[host] = HostPart(
            host=host,
            ranks=ranks,
            measured_by=measured_by,
            energy_j=None,
            energy_range_j=None,
            estimated=False,
            domains={},
            missing=[r for r in expected.get(host, []) if r not in parts],
        )
    for r in sorted(parts):
        part = parts[r]
        hp = hosts[part.host]
        for name, d in part.domains.items():
            key = (part.host, name)
            if key in counted_by:
                notes.append(
                    f"{name} on host {part.host} was measured by rank {counted_by[key]} and "
                    f"rank {r}: counted once (rank {counted_by[key]}'s)"
                )
                continue
            counted_by[key] = r
            hp.domains[name] = d
            domains[f"{part.host}/{name}"] = d
    total: float | None = None
    low = high = 0.0
    ranged = False
    for hp in hosts.values():
        in_total = [d for d in hp.domains.values() if d.in_total]
        if in_total:
            hp.energy_j = sum(d.energy_j or 0.0 for d in in_total)
            lows = [
                d.energy_range_j[0] if d.energy_range_j else d.energy_j or 0.0 for d in in_total
            ]
            highs = [
                d.energy_range_j[1] if d.energy_range_j else d.energy_j or 0.0 for d in in_total
            ]
            hp.energy_range_j = (sum(lows), sum(highs))
            hp.estimated = any(d.estimated for d in in_total)
            total = (total or 0.0) + hp.energy_j
            low += hp.energy_range_j[0]
            high += hp.energy_range_j[1]
            ranged = ranged or any(d.energy_range_j for d in in_total)
    if missing:
        notes.append(
            f"MISSING: rank(s) {listed_ranks(missing)} sent no part within {job.timeout_s:g} s "
            "(late, stopped or gone): the total leaves out what they measured"
        )
        for host, hp in hosts.items():
            if hp.measured_by is not None and hp.measured_by in missing:
                notes.append(
                    f"host {host}: its CPU and memory were measured by rank {hp.measured_by}, "
                    "whose part is missing: they are not in the total"
                )
    # The same note from several ranks is said once, with the ranks it came from.
    said: dict[str, list[int]] = {}
    for r in sorted(parts):
        for n in parts[r].notes:
            said.setdefault(n, []).append(r)
    for n, rs in said.items():
        who = f"rank {rs[0]}" if len(rs) == 1 else f"ranks {listed_ranks(rs)}"
        notes.append(f"{who}: {n}")
    partial = bool(missing) or any(p.partial for p in parts.values())
    return JobWindow(
        job_id=job.job_id,
        world_size=job.world_size,
        label=label,
        duration_s=max(p.duration_s for p in parts.values()),
        energy_j=total,
        energy_range_j=(low, high) if total is not None and ranged else None,
        estimated=any(hp.estimated for hp in hosts.values()),
        partial=partial,
        domains=domains,
        hosts=hosts,
        ranks=dict(sorted(parts.items())),
        missing=missing,
        notes=notes,
    )


def listed_ranks(ranks: Iterable[int]) -> str:
    return ", ".join(str(r) for r in ranks)
