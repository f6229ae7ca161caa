"""The core's rules for domain kinds, read once from the native module: which kinds are added
to the total, which sit inside another or cover several, which CodeCarbon part each is, and
which RAPL reads. Python asks here and never re-codes them (tests/test_rules_parity.py)."""

from __future__ import annotations

from collections.abc import Sequence

from carbonfast import _native
from carbonfast._typing import PartName, RoleName

RULES: dict[str, _native.KindRule] = {r.name: r for r in _native.kind_rules()}


def _rule(kind: str) -> _native.KindRule | None:
    return RULES.get(kind)


def role(kind: str) -> RoleName | None:
    """How a kind's energy stands to the total; None for a name the core does not know (a
    record written by another version)."""
    r = _rule(kind)
    return r.role if r else None


def part_of(kind: str) -> PartName | None:
    """The CodeCarbon part a kind's energy is the figure of, where it is one."""
    r = _rule(kind)
    return r.part if r else None


def counts_in_total(kind: str) -> bool:
    """Whether a kind is added to the total beside the others (no platform meter, module or
    lone psys being the total)."""
    r = _rule(kind)
    return bool(r and r.counts_in_total)


def is_rapl(kind: str) -> bool:
    """Whether RAPL reads this kind: a host counter that refreshes about every millisecond."""
    r = _rule(kind)
    return bool(r and r.rapl)


def meter_rules(kinds: Sequence[str]) -> list[tuple[bool, PartName | None]]:
    """For a meter whose domains are of `kinds`, in order: whether each is in the total and
    the part it is reported in. Unknown names are neither."""
    known = [k for k in kinds if k in RULES]
    ruled = iter(_native.meter_rules(known))
    return [next(ruled) if k in RULES else (False, None) for k in kinds]
