"""Energy microbenchmarks: which variant of a function costs less energy per call, and by how
much, with confidence intervals.

How a sample is taken. Counters refresh in steps (RAPL about every millisecond, an H100's NVML
counter about every 100 ms), and a reading is the energy as of the latest refresh. A sample is
therefore taken between two refreshes of the slowest counter in the total, while the calls run:
  1. the variant is called in batches, over and over; after each batch the counters are looked
     at (cheaply: a slow counter is read by a background poller that timestamps each refresh);
  2. the sample opens at a refresh that comes once the calls have run for one refresh period
     (so that a device's power has settled on this variant's load), and closes at the refresh
     at least 25 refreshes later; the calls go on until it is seen;
  3. its energy is the counter's difference between those two refreshes, less what the looks
     inside it drew (below); the calls it holds are counted by time, a batch that straddles a
     refresh counted in part.
Variants are interleaved (A B A B ...) so that drift (temperature, frequency, other load)
falls on all of them alike; warm-up calls are never measured. Counters that move on every read
(models) need no synchronisation: a sample is then a calibrated number of calls.

A call alone, never the harness's reads. A look at the counters costs what a read costs: about
a microsecond on RAPL's own files, but 100 us and more behind a FUSE file, on some hwmon
sensors and ACPI power meters. Looking twice per refresh period, a sample is then a fifth part
reads or more, and the calls would be charged with them. So each batch is timed by the clock:
  - time: a sample's seconds are those its batches ran inside it; the looks between batches
    are left out, exactly;
  - energy: what the looks drew is taken off at their own power, as they draw it beside this
    variant's calls (after a sleep a look may run at a power that looks alone never do). Once
    the looks take more than LOOK_SHARE of a sample, every other round reads the counters
    LOOK_READS times per look, and a least-squares fit over the variant's samples,
    joules = J/call x calls + W x look seconds, gives that power (criterion's linear sampling,
    with the looks as the varied count). Below LOOK_SHARE they are taken off at the sample's
    own power (an error under LOOK_SHARE x the two powers' difference). On a busy machine the
    scheduler holds the thread up for milliseconds, in calls and in looks alike; the fit then
    tells the seconds a look ran from those it was held (this thread's CPU clock at each
    batch's edges), so that a look held up is not charged as one that ran (see _alone).
Why this and not the other ways. Looking less often only dilutes the reads (to reach 1% with
300 us reads on a 1 ms counter, a look every 30 refreshes), and each refresh is then known only
to within the long batch before it, for much noisier samples; a background reader costs the
package the same elsewhere. Varying the calls per look instead (criterion's way) would move
the batches off the refresh period that pins them (a look at least twice per period places
the refreshes); varying the reads per look keeps the batches and the edges as they are, and
gives the fit a ratio of look time to call time that differs threefold between its samples.
Samples of looks alone were tried and measured the looks' power well but out of context: a
thread that only reads is preempted more on a busy machine than one that reads after a sleep.
The time taken off is exact, and the energy taken off does not depend on what a read costs.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import time

from carbonfast.bench import stats
from carbonfast.bench.result import VariantResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from carbonfast.measure import Meter

    # (joules, seconds in calls, calls, seconds in looks, CPU seconds this thread ran in
    # calls, and in looks) of a sample.
    Sample = tuple[float, float, float, float, float, float]

    Variants = dict[str, Callable[..., Any]]

    class Reader(Protocol):
        """What the engine reads: see ReadReader and MeterReader."""

        period: float

        def read(self) -> tuple[float, float]: ...
        def poll(
            self, since: int | None
        ) -> tuple[float, int, list[tuple[float, float]], float]: ...
        def logged_energy(self, t1: float, t2: float) -> float: ...


# CLOCK_MONOTONIC, the clock the meter stamps its readings with.
clock = time.monotonic
thread_clock = time.thread_time

# Refreshes of the slowest counter each sample spans.
REFRESHES_PER_SAMPLE = 25
# Batches per refresh period: how often the engine looks at the counters while calling; two
# place each refresh within half a period. The looks' time and energy are taken off the calls.
BATCHES_PER_PERIOD = 2
# Above this share of a sample, the looks' own power is measured: every other round, each look
# reads the counters LOOK_READS times.
LOOK_SHARE = 0.005
LOOK_READS = 3
# ... or more, up to MAX_LOOK_READS, so that those looks take LOOK_SPREAD of a batch.
LOOK_SPREAD = 0.25
MAX_LOOK_READS = 64
# Above this share of the samples' time held up by the scheduler, the looks' power is fitted
# apart from the power drawn while they were held (see _alone).
HELD_SHARE = 0.01


class MeterReader:
    """A Meter, for the engine: its whole total by read(), and the refreshes of its slowest
    counter in the total, which the native meter timestamps."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._native = meter.native
        self._base = self._native.read()
        if not any(d.counts_in_total for d in meter.domains):
            raise ValueError(
                "cf.bench needs energy to compare, and this meter reads none; see "
                "`carbonfast info`, or leave estimation on (estimate=True)"
            )
        pacing = self._native.pacing()
        self._pacing, self.period = pacing if pacing else (0, 0.0)

    def read(self) -> tuple[float, float]:
        snap = self._native.read()
        w = self._native.window(self._base, snap)
        return snap.t_ns * 1e-9, w.total_j or 0.0

    def poll(self, since: int | None) -> tuple[float, int, list[tuple[float, float]], float]:
        t, count, steps, unlogged = self._native.bench_poll(self._pacing, since)
        return t * 1e-9, count, [(m * 1e-9, w * 1e-9) for m, w in steps], unlogged

    def logged_energy(self, t1: float, t2: float) -> float:
        return self._native.logged_energy(round(t1 * 1e9), round(t2 * 1e9))


class ReadReader:
    """Any object whose read() returns (CLOCK_MONOTONIC seconds, cumulative joules): its
    refreshes are the changes its readings show."""

    def __init__(self, read: Callable[[], tuple[float, float]]) -> None:
        self.read = read
        self.period = update_period(read)
        self._count = 0
        self._last_same, self._last = read()
        self._edges: list[tuple[float, float]] = []

    def poll(self, since: int | None) -> tuple[float, int, list[tuple[float, float]], float]:
        t, e = self.read()
        new: list[tuple[float, float]] = []
        if e != self._last:
            mid = (self._last_same + t) / 2
            self._edges.append((mid, e))
            del self._edges[:-4096]  # bounded: a sample needs only its own
            self._count += 1
            new.append((mid, t - self._last_same))
            self._last = e
        self._last_same = t
        return t, self._count, new if since is not None else [], 0.0

    def logged_energy(self, t1: float, t2: float) -> float:
        at = dict(self._edges)
        return at[t2] - at[t1]


def update_period(read: Callable[[], tuple[float, float]], limit_s: float = 0.3) -> float:
    """The counter's refresh period, from the intervals between changes seen while polling;
    0 for a counter that changes on every read (a model, or a fast counter)."""
    changes: list[float] = []
    reads = 0
    _, last = read()
    start = clock()
    while clock() - start < limit_s and len(changes) < 12:
        t, e = read()
        reads += 1
        if e != last:
            changes.append(t)
            last = e
    if len(changes) >= reads * 0.5:
        return 0.0  # it changes (almost) every read: no steps to synchronise on
    if len(changes) < 3:
        return limit_s  # hardly moves: treat as very coarse
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    return gaps[len(gaps) // 2]


def _at(series: list[tuple[float, float]], t: float) -> float:
    """The value at `t` of a series of (time, value), linear between its points."""
    times = [p[0] for p in series]
    i = bisect.bisect_right(times, t)
    if i == 0:
        return series[0][1]
    if i == len(series):
        return series[-1][1]
    (ta, va), (tb, vb) = series[i - 1], series[i]
    return va + (vb - va) * (t - ta) / (tb - ta) if tb > ta else vb


class Engine:
    def __init__(
        self,
        reader: Reader,
        sync: Callable[[], object] | None,
        refreshes: int = REFRESHES_PER_SAMPLE,
    ) -> None:
        self.reader = reader
        self.sync = sync
        self.period = reader.period
        self.refreshes = refreshes
        self.last_span = (0.0, 0.0)
        # Widths of the refresh intervals seen lately (see _precise), by reads per look.
        self._widths: dict[int, list[float]] = {}

    def sample(self, call: Callable[[], object], n: int, reads: int = 1) -> Sample:
        """(joules, seconds in calls, calls, seconds in looks, CPU seconds this thread ran in
        calls and in looks) of one sample: `n` calls per batch between refreshes, each look
        reading the counters `reads` times, or `n` calls in all where the counters move on
        every read. `last_span` holds its (start, end) in CLOCK_MONOTONIC seconds."""
        if self.period <= 0:
            return self._sample_continuous(call, n)
        reader = self.reader
        t, count, _, unlogged = reader.poll(None)
        settle = t + self.period
        # Calls done by each instant: they progress inside batches only, never during a look.
        calls: list[tuple[float, float]] = [(t, 0.0)]
        ran: list[tuple[float, float]] = []
        fast: list[tuple[float, float]] = [(t, unlogged)]
        # This thread's CPU time at each batch's start and end: how long the scheduler kept it
        # from running, in calls and in looks.
        cpu: list[tuple[float, float]] = []
        edges: list[float] = []
        widths = self._widths.setdefault(reads, [])
        done = 0
        while len(edges) <= self.refreshes:
            start, end, cpu_s = self._batch(call, n)
            cpu.append(cpu_s)
            ran.append((start, end))
            calls.append((start, float(done)))
            done += n
            calls.append((end, float(done)))
            batch = t
            t, count, new, unlogged = reader.poll(count)
            for _ in range(reads - 1):
                t, count, more, unlogged = reader.poll(count)
                new += more
            fast.append((t, unlogged))
            if new:
                # Until the usual width is known: within a period, or the batch it fell in.
                first = max(self.period, 1.5 * (t - batch))
                edges.extend(m for m, w in new if m >= settle and self._precise(widths, w, first))
                widths.extend(w for _, w in new)
                del widths[:-64]
        t1, t2 = edges[0], edges[-1]
        self.last_span = (t1, t2)
        joules = reader.logged_energy(t1, t2) + _at(fast, t2) - _at(fast, t1)
        inside = calls_cpu = looks_cpu = 0.0
        for i, (a, b) in enumerate(ran):
            part = max(0.0, min(b, t2) - max(a, t1))
            inside += part
            if b > a:
                calls_cpu += part / (b - a) * (cpu[i][1] - cpu[i][0])
            if i + 1 < len(ran):  # the look after this batch
                la, lb = b, ran[i + 1][0]
                look = max(0.0, min(lb, t2) - max(la, t1))
                if lb > la:
                    looks_cpu += look / (lb - la) * (cpu[i + 1][0] - cpu[i][1])
        done_calls = _at(calls, t2) - _at(calls, t1)
        return joules, inside, done_calls, (t2 - t1) - inside, calls_cpu, looks_cpu

    def _precise(self, widths: list[float], width: float, first: float) -> bool:
        """Whether a refresh is known well enough to close a sample on: its interval no wider
        than three times the usual one. How wide that is depends on who reads the counter (a
        background poller: two reads; this engine: one batch); now and then a refresh is seen
        late, and its midpoint could be off by half a period."""
        if len(widths) < 5:
            return width <= first
        usual = sorted(widths)[len(widths) // 2]
        return width <= 3 * usual

    def _sample_continuous(self, call: Callable[[], object], n: int) -> Sample:
        t_a, e_a = self.reader.read()
        start, end, (cpu_a, cpu_b) = self._batch(call, n)
        t_b, e_b = self.reader.read()
        self.last_span = (t_a, t_b)
        looks = max(0.0, (t_b - t_a) - (end - start))
        return e_b - e_a, end - start, float(n), looks, cpu_b - cpu_a, looks

    def _batch(
        self, call: Callable[[], object], n: int
    ) -> tuple[float, float, tuple[float, float]]:
        """`n` calls (and the device's sync): their start and end on the clock, and this
        thread's CPU clock around them."""
        cpu_start = thread_clock()
        start = clock()
        for _ in range(n):
            call()
        if self.sync is not None:
            self.sync()
        end = clock()
        return start, end, (cpu_start, thread_clock())

    def calibrate(self, call: Callable[[], object], target_s: float) -> int:
        """Calls per batch (or per sample) so that it lasts about `target_s`."""
        n = 1
        while True:
            start, end, _ = self._batch(call, n)
            elapsed = end - start
            if elapsed >= target_s / 4 or n >= 1 << 30:
                return max(1, int(n * target_s / max(elapsed, 1e-9)))
            n *= 4


def run(
    variants: Variants,
    *,
    reader: Reader,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    min_time: float = 2.0,
    rounds: int | None = None,
    warmup: float = 0.1,
    sync: Callable[[], object] | None = None,
    baseline: bool = False,
) -> dict[str, Any]:
    """Benchmarks every variant; returns the raw samples and what was measured at start-up."""
    kwargs = kwargs or {}
    calls = {name: _bind(f, args, kwargs) for name, f in variants.items()}
    engine = Engine(reader, sync)
    # A batch between two looks at the counters, or a whole sample where they move on every read.
    target = engine.period / BATCHES_PER_PERIOD if engine.period > 0 else 0.005
    for call in calls.values():
        end = clock() + warmup
        while clock() < end:
            call()
    n = {name: engine.calibrate(call, target) for name, call in calls.items()}
    idle_w = _idle_power(reader.read, max(0.2, 10 * engine.period)) if baseline else None
    taken: dict[str, list[Sample]] = {name: [] for name in calls}
    spans: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    reads_of: dict[str, list[int]] = {name: [] for name in calls}
    started = clock()
    done = 0
    # Once the looks are seen to take more than LOOK_SHARE of a sample, every other round
    # reads the counters LOOK_READS times or more per look, for the looks' own power (see _alone).
    vary = False
    more = LOOK_READS
    while True:
        reads = more if vary and done % 2 else 1
        for name, call in calls.items():
            taken[name].append(_retried(engine, call, n[name], reads))
            reads_of[name].append(reads)
            spans[name].append(engine.last_span)
        done += 1
        if not vary and engine.period > 0 and _look_share(taken) > LOOK_SHARE:
            vary, more = True, _more_reads(taken)
        if rounds is not None:
            if done >= rounds:
                break
        elif done >= 5 and clock() - started >= min_time and (not vary or done >= 6):
            break
    return {
        "samples": {name: _alone(xs, reads_of[name]) for name, xs in taken.items()},
        "spans": spans,
        "update_period_s": engine.period,
        "idle_power_w": idle_w,
    }


def _retried(
    engine: Engine, call: Callable[[], object], n: int, reads: int, tries: int = 3
) -> Sample:
    """A sample, taken again where the refreshes around it were not seen in time (a reader
    kept from running for longer than the counter's log waits, on a busy machine): seconds
    of benchmark are not lost to one late refresh, and a counter that stopped still fails."""
    from carbonfast._native import SensorUnavailable

    for attempt in range(tries):
        try:
            return engine.sample(call, n, reads)
        except SensorUnavailable:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _more_reads(taken: dict[str, list[Sample]]) -> int:
    """Reads per look in the varied rounds: at least LOOK_READS, and enough that those looks
    take about LOOK_SPREAD of a batch, so that cheap reads (a few microseconds) still differ
    enough between the rounds for their power to be fitted well."""
    shares = sorted(h / (s + h) for xs in taken.values() for _, s, _, h, _, _ in xs if s + h > 0)
    share = shares[len(shares) // 2] if shares else 1.0
    if share <= 0:
        return LOOK_READS
    return max(LOOK_READS, min(MAX_LOOK_READS, math.ceil(LOOK_SPREAD * (1 - share) / share)))


def _look_share(taken: dict[str, list[Sample]]) -> float:
    """The largest share of a sample's time that its looks took."""
    return max(
        (h / (s + h) for xs in taken.values() for _, s, _, h, _, _ in xs if s + h > 0), default=0.0
    )


def _alone(samples: list[Sample], reads: list[int]) -> list[tuple[float, float, float]]:
    """(joules, seconds, calls) of the calls alone in each sample: the looks' time left out,
    and their energy taken off at their own power. That power is the looks' as they draw it
    beside these calls (after a sleep, a look may run at a power that looks alone never do),
    fitted by least squares over samples whose looks read once and LOOK_READS times (`reads`),
    per call: joules/call = J/call + W x look seconds/call.
    On a busy machine the scheduler keeps this thread from running now and then, in calls and
    in looks, and the power drawn meanwhile is not the looks' own: a look held up for 4 ms
    would be charged 4 ms at W. So where the thread was held up, the fit tells the seconds it
    ran from those it was held (this thread's CPU clock, at each batch's edges):
    joules/call = J/call + W x look CPU seconds/call + P x held seconds/call, the held seconds
    of calls and looks alike, and takes off only the looks' part. Held time in calls stays
    theirs, as it does in the calls' own wall time. Where the looks all read once (they took
    too little of the samples for it to matter), they are taken off at the sample's own
    power."""
    fit = None
    if len(set(reads)) > 1:
        rows = [
            (e / c, h_cpu / c, ((s - s_cpu) + (h - h_cpu)) / c, h / c)
            for e, s, c, h, s_cpu, h_cpu in samples
            if c > 0
        ]
        # Held time is fitted only where there is some: on a quiet machine its few
        # microseconds give its power no meaning, and a wild one would be taken off the looks.
        span = sum(s + h for _, s, _, h, _, _ in samples)
        held = sum((s - s_cpu) + (h - h_cpu) for _, s, _, h, s_cpu, h_cpu in samples)
        ceiling = 2 * max(e / (s + h) for e, s, _, h, _, _ in samples if s + h > 0)
        two = (
            _least_squares([(y, (x1, x2)) for y, x1, x2, _ in rows])
            if held > HELD_SHARE * span
            else None
        )
        if two is not None and 0 <= two[1] <= ceiling:
            fit = (max(0.0, two[0]), two[1])
        else:
            one = _least_squares([(y, (x,)) for y, _, _, x in rows])
            if one is not None:
                fit = (max(0.0, one[0]), max(0.0, one[0]))
    out = []
    for e, s, c, h, _, h_cpu in samples:
        if fit is not None:
            looks_j = fit[0] * h_cpu + fit[1] * max(0.0, h - h_cpu)
        else:
            looks_j = h * (e / (s + h) if s + h > 0 else 0.0)
        out.append((e - looks_j, s, c))
    return out


def _least_squares(points: list[tuple[float, tuple[float, ...]]]) -> tuple[float, ...] | None:
    """The slopes of y = a + sum(b_k x_k) through `points`, (y, xs) each, by ordinary least
    squares with an intercept (one or two xs); None where the xs do not vary enough, or vary
    together, to tell the slopes apart."""
    if not points:
        return None
    k = len(points[0][1])
    n = len(points)
    if n < k + 2:
        return None
    my = sum(y for y, _ in points) / n
    mx = [sum(xs[j] for _, xs in points) / n for j in range(k)]
    s = [
        [sum((xs[i] - mx[i]) * (xs[j] - mx[j]) for _, xs in points) for j in range(k)]
        for i in range(k)
    ]
    sy = [sum((xs[i] - mx[i]) * (y - my) for y, xs in points) for i in range(k)]
    # A regressor that barely moves (no held time on a quiet machine) cannot be fitted.
    if any(s[i][i] <= (1e-3 * mx[i]) ** 2 * n + 1e-30 for i in range(k)):
        return None
    if k == 1:
        return (sy[0] / s[0][0],)
    det = s[0][0] * s[1][1] - s[0][1] * s[1][0]
    if det <= 0.01 * s[0][0] * s[1][1]:  # the two move together: |correlation| > 0.995
        return None
    return (
        (sy[0] * s[1][1] - sy[1] * s[0][1]) / det,
        (sy[1] * s[0][0] - sy[0] * s[1][0]) / det,
    )


def _bind(f: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Callable[[], Any]:
    if not args and not kwargs:
        return f
    return lambda: f(*args, **kwargs)


def _idle_power(read: Callable[[], tuple[float, float]], seconds: float) -> float:
    t0, e0 = read()
    time.sleep(seconds)
    t1, e1 = read()
    return (e1 - e0) / (t1 - t0)


def summarise(raw: dict[str, Any], names: list[str]) -> list[VariantResult]:
    out = []
    for name in names:
        taken = raw["samples"][name]
        joules = [e / c for e, _, c in taken]
        seconds = [s / c for _, s, c in taken]
        j, j_lo, j_hi = stats.mean_ci(joules)
        s, s_lo, s_hi = stats.mean_ci(seconds)
        dynamic = None
        if raw["idle_power_w"] is not None:
            dyn = [jj - raw["idle_power_w"] * ss for jj, ss in zip(joules, seconds, strict=True)]
            dynamic = stats.mean_ci(dyn)
        out.append(
            VariantResult(
                name=name,
                seconds_per_call=s,
                seconds_per_call_ci=(s_lo, s_hi),
                joules_per_call=j,
                joules_per_call_ci=(j_lo, j_hi),
                dynamic_joules_per_call=dynamic[0] if dynamic else None,
                dynamic_joules_per_call_ci=(dynamic[1], dynamic[2]) if dynamic else None,
                samples=len(joules),
                calls_per_sample=round(sum(c for _, _, c in taken) / len(taken)),
                outliers=stats.outliers(joules),
                cv=stats.cv(joules),
                joule_samples=joules,
            )
        )
    best = min(out, key=lambda v: v.joules_per_call)
    for v in out:
        v.ratio, lo, hi = stats.ratio_ci(v.joule_samples, best.joule_samples)
        v.ratio_ci = (lo, hi)
        v.significant = v is not best and lo > 1.0
    return out


def isolated(variants: Variants, **kw: Any) -> dict[str, Any]:
    """Runs each variant alone in a forked child process; merges their raw results."""
    import json

    merged: dict[str, Any] = {"samples": {}, "spans": {}}
    for name, f in variants.items():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                raw = run({name: f}, **kw)
                os.write(w, json.dumps(raw).encode())
            finally:
                os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if not chunks:
            raise RuntimeError(f"the process benchmarking {name!r} died before reporting")
        raw = json.loads(b"".join(chunks))
        merged["samples"][name] = raw["samples"][name]
        merged["spans"][name] = raw["spans"][name]
        for key in ("update_period_s", "idle_power_w"):
            merged[key] = raw[key]
    return merged
