"""Energy microbenchmarks: compare code variants by energy per call, with statistics.

res = cf.bench({"loop": f_loop, "numpy": f_np}, args=(x,))
print(res)             # s/call, J/call with 95% CIs, g CO2e per million calls, ratios
res.to_json()
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from carbonfast.bench.result import BenchResult, Comparison, VariantResult
    from carbonfast.measure import Meter

__all__ = ["BenchResult", "Comparison", "VariantResult", "bench", "compare"]


def __getattr__(name: str) -> Any:
    # The result classes load on first use: `import carbonfast` imports this package (its
    # functions must win the name `carbonfast.bench`), and dataclasses are slow to import.
    if name in ("BenchResult", "Comparison", "VariantResult"):
        from carbonfast.bench import result

        return getattr(result, name)
    raise AttributeError(f"module 'carbonfast.bench' has no attribute {name!r}")


def bench(
    funcs: Callable[..., Any] | dict[str, Callable[..., Any]],
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    setup: Callable[[], object] | None = None,
    min_time: float = 2.0,
    rounds: int | None = None,
    sync: str | Callable[[], object] | None = None,
    *,
    baseline: bool = False,
    isolate: bool = False,
    warmup: float = 0.1,
    meter: Meter | Any = None,
    record: bool = True,
    label: str | None = None,
) -> BenchResult:
    """Energy and time per call of each variant, with 95% confidence intervals.

    `funcs`: one function or {name: function}, each called as f(*args, **kwargs). `setup` runs
    once before. Sampling runs for at least `min_time` seconds (or exactly `rounds` rounds),
    variants interleaved; each sample spans 25 refreshes of the slowest counter in the total
    (2.6 s where an H100's 100 ms counter is in it). `sync` ("torch", "cupy", "jax" or a
    function) waits for the GPU after each batch of calls. `baseline=True` also measures the
    idle power and reports the dynamic energy (above idle). `isolate=True` runs each variant
    in its own process. The result is recorded in the history unless `record=False`.

    `meter`: the Meter to read (default: the default meter), or any object whose `read()`
    returns (CLOCK_MONOTONIC seconds, cumulative joules).
    """
    from carbonfast.bench import engine
    from carbonfast.bench.result import BenchResult
    from carbonfast.carbon import Carbon
    from carbonfast.config import CARBON_KEYS, resolve
    from carbonfast.decorator import resolve_sync
    from carbonfast.meter import Meter, default_meter

    variants = funcs if isinstance(funcs, dict) else {_name(funcs): funcs}
    if not variants:
        raise ValueError("bench needs at least one function")
    for name, f in variants.items():
        if not callable(f):
            raise ValueError(f"variant {name!r} is not callable: {f!r}")
    if min_time <= 0 or (rounds is not None and rounds < 2):
        raise ValueError("min_time must be above 0 and rounds at least 2")
    meter = meter or default_meter()
    reader: engine.Reader
    if isinstance(meter, Meter):
        reader, carbon, estimated = engine.MeterReader(meter), meter.carbon, meter.estimated
    else:
        reader = engine.ReadReader(meter.read)
        carbon, estimated = Carbon(resolve(CARBON_KEYS, {})), False
    if setup is not None:
        setup()
    from datetime import datetime, timezone

    started_at = datetime.now(timezone.utc).isoformat()
    options: dict[str, Any] = {
        "reader": reader,
        "args": args,
        "kwargs": kwargs,
        "min_time": min_time,
        "rounds": rounds,
        "warmup": warmup,
        "sync": resolve_sync(sync),
        "baseline": baseline,
    }
    raw = engine.isolated(variants, **options) if isolate else engine.run(variants, **options)
    intensity = carbon.intensity()
    result = BenchResult(
        variants=engine.summarise(raw, list(variants)),
        update_period_s=raw["update_period_s"],
        refreshes_per_sample=engine.REFRESHES_PER_SAMPLE if raw["update_period_s"] > 0 else 0,
        idle_power_w=raw["idle_power_w"],
        estimated=estimated,
        intensity_g_per_kwh=intensity.g_per_kwh,
        intensity_source=intensity.source,
        pue=carbon.pue,
        started_at=started_at,
    )
    result.warnings = _warnings(result)
    if record:
        result.id = _record(result, label or ", ".join(variants))
    return result


def _name(f: Callable[..., Any]) -> str:
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _warnings(result: BenchResult) -> list[str]:
    out = []
    for v in result.variants:
        if v.cv > 0.1:
            out.append(
                f"{v.name}: unstable, energy per call varies {v.cv:.0%} between samples "
                "(other load? frequency scaling?); run longer or on a quiet machine"
            )
        if v.outliers > max(1, v.samples // 10):
            out.append(f"{v.name}: {v.outliers} of {v.samples} samples are outliers")
        if v.joules_per_call <= 0:
            out.append(
                f"{v.name}: no energy measured; the counters did not move while it ran "
                "(see `carbonfast info`)"
            )
    if result.estimated:
        out.append(
            "energy is ESTIMATED from a model of CPU time, not measured: ratios follow CPU time"
        )
    return out


def _record(result: BenchResult, label: str) -> int | None:
    from carbonfast.config import resolve

    path = resolve(("history",), {})["history"]
    if not path:
        return None
    from carbonfast.record import Record
    from carbonfast.report.history import History

    return History(path).add(Record.for_bench(result, label))


def compare(a: BenchResult | int | str | Path, b: BenchResult | int | str | Path) -> Comparison:
    """Two results side by side: each a BenchResult, a history id, or a JSON file written
    from `to_json()`. For each variant both have: J/call, ratio b/a with its 95% CI, and
    whether the change is significant."""
    from carbonfast.bench import stats
    from carbonfast.bench.result import Comparison

    ra, rb = _load(a), _load(b)
    rows = []
    for va in ra.variants:
        try:
            vb = rb[va.name]
        except KeyError:
            continue
        ratio, lo, hi = stats.ratio_ci(vb.joule_samples, va.joule_samples)
        rows.append(
            {
                "name": va.name,
                "a": va.joules_per_call,
                "b": vb.joules_per_call,
                "ratio": ratio,
                "ratio_ci": (lo, hi),
                "significant": lo > 1.0 or hi < 1.0,
            }
        )
    if not rows:
        raise ValueError("the two results share no variant name; nothing to compare")
    return Comparison(rows)


def _load(x: BenchResult | int | str | Path) -> BenchResult:
    from carbonfast.bench.result import BenchResult

    if isinstance(x, BenchResult):
        return x
    if isinstance(x, int):
        from carbonfast.config import resolve
        from carbonfast.report.history import History

        path = resolve(("history",), {})["history"]
        if not path:
            raise ValueError("the history is off (CARBONFAST_HISTORY); pass results or files")
        record, _ = History(path).get(x)
        if record.bench is None:
            raise ValueError(f"history record {x} is no benchmark")
        return BenchResult.from_dict(record.bench)
    import json
    from pathlib import Path

    return BenchResult.from_dict(json.loads(Path(x).read_text()))
