"""What a benchmark found: per variant, time and energy per call with 95% confidence intervals,
the ratio to the best, and whether the difference is significant."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass
class VariantResult:
    name: str
    seconds_per_call: float
    seconds_per_call_ci: tuple[float, float]
    joules_per_call: float
    joules_per_call_ci: tuple[float, float]
    dynamic_joules_per_call: float | None
    dynamic_joules_per_call_ci: tuple[float, float] | None
    samples: int
    calls_per_sample: int
    outliers: int
    cv: float
    joule_samples: list[float] = field(repr=False)
    ratio: float = 1.0
    ratio_ci: tuple[float, float] = (1.0, 1.0)
    significant: bool = False
    g_co2e_per_million_calls: float = 0.0


@dataclass
class BenchResult:
    variants: list[VariantResult]
    update_period_s: float
    idle_power_w: float | None
    estimated: bool
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    started_at: str
    # 0 where the counters move on every read (a model): samples are then timed call counts.
    refreshes_per_sample: int = 0
    warnings: list[str] = field(default_factory=list)
    id: int | None = None

    def __post_init__(self) -> None:
        from carbonfast.carbon import emissions_kg

        for v in self.variants:
            kg = emissions_kg(v.joules_per_call * 1e6, self.intensity_g_per_kwh, self.pue)
            v.g_co2e_per_million_calls = kg * 1e3

    def __getitem__(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants: {[v.name for v in self.variants]}")

    def to_dict(self) -> dict[str, Any]:
        """Everything, the per-sample energies included (what `compare` needs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        variants = [
            VariantResult(
                **{
                    **v,
                    "seconds_per_call_ci": tuple(v["seconds_per_call_ci"]),
                    "joules_per_call_ci": tuple(v["joules_per_call_ci"]),
                    "ratio_ci": tuple(v["ratio_ci"]),
                }
            )
            for v in d["variants"]
        ]
        # Results saved by older versions carry fields this one no longer has.
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in known}, "variants": variants})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        best = min(self.variants, key=lambda v: v.joules_per_call)
        head = (
            f"{'variant':<20}{'s/call':>12}{'+/- 95%':>10}{'J/call':>12}{'+/- 95%':>10}"
            f"{'g CO2e/1M calls':>17}{'x best (95% CI)':>24}"
        )
        lines = [head]
        for v in sorted(self.variants, key=lambda v: v.joules_per_call):
            rel = "best" if v is best else versus(v.ratio, v.ratio_ci, v.significant, ".2f")
            lines.append(
                f"{v.name:<20}{_si(v.seconds_per_call, 's'):>12}"
                f"{_half_width(v.seconds_per_call, v.seconds_per_call_ci):>10}"
                f"{_si(v.joules_per_call, 'J'):>12}"
                f"{_half_width(v.joules_per_call, v.joules_per_call_ci):>10}"
                f"{v.g_co2e_per_million_calls:>17.4g}  {rel}"
            )
        lines.append(
            f"energy {'ESTIMATED from a model' if self.estimated else 'from counters'}; "
            + (
                f"samples span {self.refreshes_per_sample} refreshes of the slowest counter "
                f"({self.update_period_s * 1e3:.3g} ms each); "
                if self.refreshes_per_sample
                else "counters move on every read; "
            )
            + f"{self.intensity_g_per_kwh:g} g/kWh x PUE {self.pue:g}"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("..." if cycle else str(self))

    def _repr_html_(self) -> str:
        from carbonfast.bench.display import bench_html

        return bench_html(self)


def _half_width(value: float, ci: tuple[float, float]) -> str:
    """A 95% CI as the share of the value it spans either side."""
    return f"{(ci[1] - ci[0]) / 2 / value:.1%}" if value else "n/a"


def _si(x: float, unit: str) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:.3g} {unit}"
    for prefix, scale in (("", 1), ("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x / 1e-15:.3g} f{unit}"


def versus(ratio: float, ci: tuple[float, float], significant: bool, spec: str) -> str:
    """A ratio with its 95% interval and whether the difference is significant, as every
    table of results says it: "1.52 (1.48-1.57) significant"."""
    mark = "significant" if significant else "not significant"
    return f"{ratio:{spec}} ({ci[0]:{spec}}-{ci[1]:{spec}}) {mark}"


@dataclass
class Comparison:
    """Two benchmark results side by side, variant by variant."""

    rows: list[dict[str, Any]]

    def __str__(self) -> str:
        lines = [f"{'variant':<20}{'J/call (a)':>14}{'J/call (b)':>14}{'b / a (95% CI)':>30}"]
        for r in self.rows:
            lines.append(
                f"{r['name']:<20}{_si(r['a'], 'J'):>14}{_si(r['b'], 'J'):>14}   "
                + versus(r["ratio"], r["ratio_ci"], r["significant"], ".3f")
            )
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("..." if cycle else str(self))

    def _repr_html_(self) -> str:
        from carbonfast.bench.display import comparison_html

        return comparison_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}
