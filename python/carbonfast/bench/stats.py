"""The statistics of a benchmark: means with confidence intervals, ratios, outliers."""

from __future__ import annotations

import math
import statistics

# Two-sided 95% critical values of Student's t by degrees of freedom; 1.96 beyond.
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021,
    60: 2.000, 120: 1.980,
}  # fmt: skip


def t95(df: int) -> float:
    """The critical value for the largest tabulated df not above `df` (conservative)."""
    if df < 1:
        return math.inf
    return (
        next((_T95[k] for k in sorted(_T95, reverse=True) if k <= df), 1.96) if df <= 120 else 1.96
    )


def mean_ci(samples: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% confidence interval for the mean."""
    m = statistics.fmean(samples)
    if len(samples) < 2:
        return m, -math.inf, math.inf
    half = t95(len(samples) - 1) * statistics.stdev(samples) / math.sqrt(len(samples))
    return m, m - half, m + half


def ratio_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(ratio of means a/b, low, high): 95% interval by the delta method on the log ratio."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    if ma <= 0 or mb <= 0 or len(a) < 2 or len(b) < 2:
        return (ma / mb if mb else math.inf), 0.0, math.inf
    rel_a = statistics.stdev(a) / ma
    rel_b = statistics.stdev(b) / mb
    se = math.sqrt(rel_a**2 / len(a) + rel_b**2 / len(b))
    ratio = ma / mb
    k = t95(min(len(a), len(b)) - 1)
    return ratio, ratio * math.exp(-k * se), ratio * math.exp(k * se)


def outliers(samples: list[float]) -> int:
    """Samples outside Tukey's fences (1.5 interquartile ranges beyond the quartiles)."""
    if len(samples) < 4:
        return 0
    q1, _, q3 = statistics.quantiles(samples, n=4)
    iqr = q3 - q1
    return sum(1 for s in samples if s < q1 - 1.5 * iqr or s > q3 + 1.5 * iqr)


def cv(samples: list[float]) -> float:
    """Coefficient of variation (0 for fewer than two samples)."""
    if len(samples) < 2:
        return 0.0
    m = statistics.fmean(samples)
    return statistics.stdev(samples) / abs(m) if m else math.inf
