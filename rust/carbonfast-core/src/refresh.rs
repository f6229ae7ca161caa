//! Counters that refresh in steps, and windows shorter than a step.
//!
//! A hardware energy counter does not count continuously: RAPL refreshes about every
//! millisecond, an H100's NVML counter about every 100 ms. A reading returns the energy as of
//! the latest refresh, so a window between two refreshes reads 0 J, and one just across a
//! refresh reads a whole step. carbonfast timestamps every refresh it sees (each read that
//! finds a new value brackets the refresh between the last read that saw the old value and
//! itself), and resolves a window's edges against those refreshes:
//!
//! - the energy at an instant is interpolated between the refreshes around it;
//! - the truth lies between the energy of the refreshes certainly inside the window (plus the
//!   lowest power seen for the rest) and the energy of the refresh intervals it overlaps.
//!
//! Everything here is pure arithmetic on observed refreshes, so it is tested without hardware.

/// One observed refresh: the counter took the value `total` (raw units, wraps unfolded) at an
/// instant in `(lo_ns, hi_ns]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub lo_ns: u64,
    pub hi_ns: u64,
    pub total: u64,
}

impl Step {
    pub fn mid_ns(&self) -> u64 {
        self.lo_ns + (self.hi_ns - self.lo_ns) / 2
    }
}

/// How often a counter refreshes: its typical period and the bounds one gap stays within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub nominal_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
}

/// How far one gap between refreshes may stray from the typical one: measured gaps stay within
/// a few percent (H100: 97-101 ms; RAPL: about 1 ms), so a tenth leaves a margin.
const PERIOD_SLACK: f64 = 0.1;

impl Period {
    pub fn new(nominal_ns: u64) -> Self {
        let n = nominal_ns as f64;
        Period {
            nominal_ns,
            min_ns: (n * (1.0 - PERIOD_SLACK)) as u64,
            max_ns: (n * (1.0 + PERIOD_SLACK)).ceil() as u64,
        }
    }
}

/// Refreshes kept per counter: 50 s of an H100's, or every refresh a second of back-to-back
/// RAPL windows shows.
pub const LOG_CAPACITY: usize = 512;

/// The refreshes seen of one counter, newest last, in a ring allocated once.
#[derive(Debug, Clone)]
pub struct StepLog {
    period: Period,
    ring: Vec<Step>,
    head: usize,
    len: usize,
    /// Refreshes seen since the meter started.
    count: u64,
    last_total: Option<u64>,
    /// Start of the most recent read that returned `last_total`.
    last_seen_ns: u64,
    /// The lowest power seen over one refresh interval, raw units per ns.
    min_power: Option<f64>,
    /// The value before the oldest refresh kept.
    base_total: u64,
}

impl StepLog {
    pub fn new(period: Period) -> Self {
        StepLog {
            period,
            ring: vec![
                Step {
                    lo_ns: 0,
                    hi_ns: 0,
                    total: 0
                };
                LOG_CAPACITY
            ],
            head: 0,
            len: 0,
            count: 0,
            last_total: None,
            last_seen_ns: 0,
            min_power: None,
            base_total: 0,
        }
    }

    pub fn period(&self) -> Period {
        self.period
    }

    /// Feeds one reading, taken by a read that ran from `start_ns` to `end_ns`. Returns whether
    /// it showed a refresh. Allocates nothing.
    pub fn observe(&mut self, total: u64, start_ns: u64, end_ns: u64) -> bool {
        let Some(last) = self.last_total else {
            // The first value came from a refresh at some time before this read: a step of its
            // own (not counted as a refresh seen), which the next refreshes and the period
            // narrow down.
            self.push(Step {
                lo_ns: 0,
                hi_ns: end_ns,
                total,
            });
            self.last_total = Some(total);
            self.base_total = total;
            self.last_seen_ns = start_ns;
            return false;
        };
        if total == last {
            self.last_seen_ns = self.last_seen_ns.max(start_ns);
            return false;
        }
        let step = Step {
            lo_ns: self.last_seen_ns,
            hi_ns: end_ns.max(self.last_seen_ns),
            total,
        };
        if let Some(prev) = self.last() {
            self.note_power(&prev, &step);
            self.follow_period(&prev, &step);
        }
        self.push(step);
        self.count += 1;
        self.last_total = Some(total);
        self.last_seen_ns = start_ns;
        true
    }

    fn push(&mut self, step: Step) {
        if self.len == LOG_CAPACITY {
            self.base_total = self.ring[self.head].total;
        }
        self.ring[self.head] = step;
        self.head = (self.head + 1) % LOG_CAPACITY;
        self.len = (self.len + 1).min(LOG_CAPACITY);
    }

    /// Follows the counter's pace from consecutive refreshes both seen precisely: a period
    /// measured at start-up from a few coarse reads may be off by a few percent, and a poller
    /// that expects each refresh a little late sees it late.
    fn follow_period(&mut self, prev: &Step, step: &Step) {
        let p = self.period.nominal_ns;
        let precise = |s: &Step| s.hi_ns - s.lo_ns <= p / 4;
        if !(precise(prev) && precise(step)) {
            return;
        }
        let gap = step.mid_ns().saturating_sub(prev.mid_ns());
        if gap >= self.period.min_ns && gap <= self.period.max_ns {
            // A slow average: one gap's midpoints are off by up to a read each.
            self.period = Period::new(p - p / 8 + gap / 8);
        }
    }

    /// Lowest power candidate from two refreshes known to be consecutive: the longest time the
    /// interval between them can have lasted.
    fn note_power(&mut self, prev: &Step, step: &Step) {
        if step.hi_ns - step.lo_ns >= self.period.min_ns || step.total < prev.total {
            return; // more than one refresh may hide in this step
        }
        let start = prev
            .lo_ns
            .max(step.lo_ns.saturating_sub(self.period.max_ns));
        let longest = step.hi_ns.saturating_sub(start).max(1);
        let power = (step.total - prev.total) as f64 / longest as f64;
        self.min_power = Some(self.min_power.map_or(power, |p| p.min(power)));
    }

    /// Refreshes seen since the meter started.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min_power(&self) -> Option<f64> {
        self.min_power
    }

    pub fn last(&self) -> Option<Step> {
        (self.len > 0).then(|| self.ring[(self.head + LOG_CAPACITY - 1) % LOG_CAPACITY])
    }

    /// The refreshes kept, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = Step> + '_ {
        let start = (self.head + LOG_CAPACITY - self.len) % LOG_CAPACITY;
        (0..self.len).map(move |i| self.ring[(start + i) % LOG_CAPACITY])
    }

    /// The value a read at `t_ns` would have returned (see `value_at`), from the refreshes kept,
    /// their instants narrowed by the period. `mark` is what `mark()` returned at `t_ns`: where
    /// the ring has since dropped the refreshes around `t_ns` (a window longer than the ring
    /// holds), the value last seen then is used, at most one refresh off.
    pub fn value_at(&self, t_ns: u64, mark: (u64, u64)) -> u64 {
        let (count, seen) = mark;
        if self.count - count + 1 > self.len as u64 {
            return seen;
        }
        let mut steps: Vec<Step> = self.steps().collect();
        tighten(&mut steps, self.period);
        value_at(&steps, t_ns).unwrap_or(self.base_total)
    }

    /// The refreshes seen so far and the last value: taken at an edge, it lets `value_at`
    /// answer for that edge however long ago it was.
    pub fn mark(&self) -> (u64, u64) {
        (self.count, self.last_total.unwrap_or(0))
    }

    /// Whether a refresh certainly after `t_ns` has been seen.
    pub fn has_step_after(&self, t_ns: u64) -> bool {
        self.last()
            .is_some_and(|s| s.lo_ns + EDGE_TOLERANCE_NS >= t_ns)
    }

    /// The refreshes seen since `count` (as returned by `count()` earlier), oldest first;
    /// fewer if the ring has overwritten some.
    pub fn steps_since(&self, count: u64) -> impl Iterator<Item = Step> + '_ {
        let new = (self.count.saturating_sub(count) as usize).min(self.len);
        self.steps().skip(self.len - new)
    }

    /// Copies the newest refreshes kept into `out`, oldest first, as many as fit; returns how
    /// many. Allocates nothing.
    pub fn copy_newest(&self, out: &mut [Step]) -> usize {
        let n = out.len().min(self.len);
        for (slot, step) in out.iter_mut().zip(self.steps().skip(self.len - n)) {
            *slot = step;
        }
        n
    }
}

/// A reading's own edge: a read takes a microsecond or so, and a refresh inside it is as
/// likely before as after the instant it is stamped with.
pub const EDGE_TOLERANCE_NS: u64 = 2_000;

/// Narrows each refresh's interval with the period: where a step holds at most one refresh,
/// the refresh before it came between `min_ns` and `max_ns` earlier. Intervals the period
/// cannot explain (the counter changed its pace) are left as they were.
/// Allocates nothing for up to 64 steps (the sampler's trace tightens a few at a time).
pub fn tighten(steps: &mut [Step], period: Period) {
    // Judged on the intervals as observed: a narrowed interval may still hide several refreshes.
    let single = |s: &Step| s.hi_ns - s.lo_ns < period.min_ns;
    if steps.len() <= 64 {
        let mask = steps
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, s)| m | (u64::from(single(s)) << i));
        tighten_with(steps, period, |i| (mask >> i) & 1 == 1);
    } else {
        let flags: Vec<bool> = steps.iter().map(single).collect();
        tighten_with(steps, period, |i| flags[i]);
    }
}

fn tighten_with(steps: &mut [Step], period: Period, single: impl Fn(usize) -> bool) {
    for i in (0..steps.len().saturating_sub(1)).rev() {
        let next = steps[i + 1];
        if single(i + 1) {
            let lo = steps[i].lo_ns.max(next.lo_ns.saturating_sub(period.max_ns));
            let hi = steps[i].hi_ns.min(next.hi_ns.saturating_sub(period.min_ns));
            if lo <= hi {
                (steps[i].lo_ns, steps[i].hi_ns) = (lo, hi);
            }
        }
    }
    for i in 1..steps.len() {
        let prev = steps[i - 1];
        if single(i) {
            let lo = steps[i].lo_ns.max(prev.lo_ns + period.min_ns);
            let hi = steps[i].hi_ns.min(prev.hi_ns + period.max_ns);
            if lo <= hi {
                (steps[i].lo_ns, steps[i].hi_ns) = (lo, hi);
            }
        }
    }
}

/// A window's energy on one stepped counter, in raw units: the value, and bounds the truth
/// lies within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// Whether `value` interpolates both edges between their refreshes (else it is `counted`).
    pub interpolated: bool,
}

/// Power within one refresh interval varies around the interval's mean; the lower bound takes
/// the lowest mean seen, less this share.
pub const LOW_POWER_MARGIN: f64 = 0.25;

/// Resolves the window `[a_ns, b_ns]` against the refreshes `steps` (tightened, oldest first).
///
/// The value interpolates both edges between the refreshes around them. A counter difference
/// is instead stale at each edge by up to a refresh, which on a 100 ms counter leaves a 150 ms
/// window one refresh's energy (~45%) off half the time. `counted` (the counter difference of
/// a window longer than a refresh) is the value where the refreshes seen do not reach back to
/// `a_ns`, as for a window longer than the log. `min_power`: the lowest power seen, raw units
/// per ns. None where the refreshes seen do not reach past `b_ns`, or, without `counted`, back
/// to `a_ns`: the caller then waits for the next refresh, or keeps the counter difference.
pub fn resolve(
    steps: &[Step],
    a_ns: u64,
    b_ns: u64,
    counted: Option<u64>,
    min_power: Option<f64>,
) -> Option<Resolved> {
    let tol = EDGE_TOLERANCE_NS;
    let after_b = steps.iter().find(|s| s.lo_ns + tol >= b_ns)?;
    // Before every refresh seen, the counter held at most the first value seen; the meter's
    // own start (total 0) is certainly before the window.
    let before_a = steps
        .iter()
        .rev()
        .find(|s| s.hi_ns <= a_ns + tol)
        .map_or(0, |s| s.total);
    let high = after_b.total.saturating_sub(before_a) as f64;

    let floor = min_power.unwrap_or(0.0) * (1.0 - LOW_POWER_MARGIN);
    let span = b_ns.saturating_sub(a_ns) as f64;
    let inside: Vec<&Step> = steps
        .iter()
        .filter(|s| s.lo_ns + tol >= a_ns && s.hi_ns <= b_ns + tol)
        .collect();
    let low = match (inside.first(), inside.last()) {
        (Some(first), Some(last)) => {
            let outside = first.lo_ns.saturating_sub(a_ns) + b_ns.saturating_sub(last.hi_ns);
            (last.total - first.total) as f64 + floor * outside as f64
        }
        _ => floor * span,
    }
    .min(high);

    let (value, interpolated) = match (interpolate(steps, a_ns), counted) {
        (Some(at_a), _) => (interpolate(steps, b_ns)? - at_a, true),
        (None, Some(v)) => (v as f64, false),
        (None, None) => return None,
    };
    Some(Resolved {
        value,
        low: low.min(value),
        high: high.max(value),
        interpolated,
    })
}

/// The counter's energy at `t_ns`, linear between the refreshes around it (by their
/// midpoints); None outside the refreshes seen.
pub fn interpolate(steps: &[Step], t_ns: u64) -> Option<f64> {
    let i = steps.iter().rposition(|s| s.mid_ns() <= t_ns)?;
    let (p, q) = (steps[i], *steps.get(i + 1)?);
    let (tp, tq) = (p.mid_ns() as f64, q.mid_ns() as f64);
    let frac = if tq > tp {
        ((t_ns as f64 - tp) / (tq - tp)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    Some(p.total as f64 + (q.total as f64 - p.total as f64) * frac)
}

/// `interpolate` for a trace: None also where the refresh before `t_ns` is the first value
/// read, whose instant is unknown (it came at some time before that read) unless the period
/// placed it: a trace shows power only between refreshes it can place.
pub fn trace_energy(steps: &[Step], t_ns: u64) -> Option<f64> {
    let i = steps.iter().rposition(|s| s.mid_ns() <= t_ns)?;
    if steps[i].lo_ns == 0 {
        return None;
    }
    interpolate(steps, t_ns)
}

/// The counter's value at `t_ns` as an instantaneous read would have returned it: that of the
/// latest refresh before it (by midpoint). None where no refresh seen is that early.
pub fn value_at(steps: &[Step], t_ns: u64) -> Option<u64> {
    steps
        .iter()
        .rev()
        .find(|s| s.mid_ns() <= t_ns)
        .map(|s| s.total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    /// A counter of constant power `w` (units per ns) refreshing every `period` from `phase`,
    /// polled by reads of `read` ns back to back from `start` to `end`.
    fn polled(w: f64, period: u64, phase: u64, read: u64, start: u64, end: u64) -> StepLog {
        let mut log = StepLog::new(Period::new(period));
        let mut t = start;
        while t < end {
            let latch = t + read / 2;
            let last_refresh = if latch < phase {
                0
            } else {
                phase + (latch - phase) / period * period
            };
            log.observe((w * last_refresh as f64) as u64, t, t + read);
            t += read;
        }
        log
    }

    fn tightened(log: &StepLog) -> Vec<Step> {
        let mut steps: Vec<Step> = log.steps().collect();
        tighten(&mut steps, log.period());
        steps
    }

    #[test]
    fn a_refresh_is_bracketed_by_the_reads_around_it() {
        let mut log = StepLog::new(Period::new(100 * MS));
        log.observe(10, 0, 3 * MS);
        log.observe(10, 5 * MS, 8 * MS);
        assert!(log.observe(20, 9 * MS, 12 * MS));
        assert_eq!(
            log.last(),
            Some(Step {
                lo_ns: 5 * MS,
                hi_ns: 12 * MS,
                total: 20
            })
        );
        assert_eq!(log.count(), 1);
        assert!(!log.observe(20, 13 * MS, 16 * MS));
    }

    #[test]
    fn a_short_window_at_constant_power_is_interpolated_exactly() {
        // 700 W in mJ per ns: 7e-4; refresh every 100 ms; reads of 3.3 ms.
        let w = 7e-4;
        let log = polled(w, 100 * MS, 37 * MS, 3_300_000, 0, 600 * MS);
        let steps = tightened(&log);
        let (a, b) = (250 * MS, 252 * MS);
        let r = resolve(&steps, a, b, None, log.min_power()).unwrap();
        let truth = w * 2.0 * MS as f64;
        assert!((r.value - truth).abs() < 0.02 * truth, "{r:?} vs {truth}");
        assert!(r.low <= truth && truth <= r.high, "{r:?} vs {truth}");
        assert!(r.low > 0.0 && r.high <= w * 100.0 * MS as f64 * 1.2);
    }

    #[test]
    fn a_window_of_one_and_a_half_refreshes_is_interpolated_not_counted() {
        let w = 7e-4;
        let log = polled(w, 100 * MS, 37 * MS, 3_300_000, 0, 900 * MS);
        let steps = tightened(&log);
        let (a, b) = (220 * MS, 370 * MS);
        let truth = w * 150.0 * MS as f64;
        // What the counter read at each edge: the value of its latest refresh, 2 refreshes apart.
        let stale = (value_at(&steps, b).unwrap() - value_at(&steps, a).unwrap()) as f64;
        assert!((stale - truth).abs() > 0.2 * truth, "{stale} vs {truth}");
        let r = resolve(&steps, a, b, Some(stale as u64), log.min_power()).unwrap();
        assert!(r.interpolated);
        assert!((r.value - truth).abs() < 0.02 * truth, "{r:?} vs {truth}");
        assert!(r.low <= truth && truth <= r.high, "{r:?} vs {truth}");
        // A start older than the log (its first refreshes gone from the ring) keeps the
        // counter difference.
        let r = resolve(&steps[3..], a, b, Some(12345), log.min_power()).unwrap();
        assert!(!r.interpolated && r.value == 12345.0, "{r:?}");
    }

    #[test]
    fn without_a_refresh_after_the_window_there_is_nothing_to_resolve_yet() {
        let log = polled(1.0, 100 * MS, 0, 3 * MS, 0, 300 * MS);
        let steps = tightened(&log);
        assert_eq!(resolve(&steps, 290 * MS, 295 * MS, None, None), None);
        assert!(resolve(&steps, 190 * MS, 195 * MS, None, None).is_some());
    }

    #[test]
    fn the_period_narrows_a_refresh_seen_late() {
        // A read long before, then nothing until a read after the refresh; the next refresh
        // is seen precisely, so the earlier one lies a period before it.
        let p = Period::new(100 * MS);
        let mut steps = vec![
            Step {
                lo_ns: 0,
                hi_ns: 250 * MS,
                total: 10,
            },
            Step {
                lo_ns: 299 * MS,
                hi_ns: 301 * MS,
                total: 20,
            },
        ];
        tighten(&mut steps, p);
        assert!(steps[0].lo_ns >= 299 * MS - p.max_ns && steps[0].hi_ns <= 250 * MS);
    }

    #[test]
    fn an_edge_older_than_the_ring_keeps_the_value_seen_at_it() {
        let mut log = StepLog::new(Period::new(100));
        let read = |log: &mut StepLog, k: u64| log.observe(k * 7, k * 100 + 10, k * 100 + 20);
        read(&mut log, 0);
        for k in 1..50 {
            read(&mut log, k);
        }
        let (edge, mark) = (4_925, log.mark()); // between the refreshes of k = 49 and 50
        assert_eq!(log.value_at(edge, mark), 49 * 7);
        assert_eq!(log.value_at(edge - 100, mark), 48 * 7); // the ring still holds it
        for k in 50..(50 + LOG_CAPACITY as u64) {
            read(&mut log, k);
        }
        assert_eq!(log.value_at(edge, mark), 49 * 7);
    }

    #[test]
    fn a_trace_places_no_energy_before_the_first_refresh_it_can_place() {
        let w = 7e-4;
        let log = polled(w, 100 * MS, 37 * MS, 3_300_000, 5 * MS, 600 * MS);
        let mut steps = [Step {
            lo_ns: 0,
            hi_ns: 0,
            total: 0,
        }; 4];
        let n = log.copy_newest(&mut steps);
        assert_eq!(n, 4);
        assert_eq!(steps[3], log.last().unwrap());
        let all: Vec<Step> = log.steps().collect();
        // The first value was read at 5 ms, from a refresh at some time before: unknown.
        assert_eq!(trace_energy(&all, all[1].mid_ns() - MS), None);
        // Past the first refresh, the energy interpolated at an instant is the truth's.
        let steps = tightened(&log);
        let t = 250 * MS;
        let e = trace_energy(&steps, t).unwrap();
        assert!((e - w * t as f64).abs() < 0.01 * w * t as f64, "{e}");
        assert_eq!(trace_energy(&steps, 700 * MS), None);
    }

    #[test]
    fn value_at_is_what_a_read_would_have_returned() {
        let steps = [
            Step {
                lo_ns: 10,
                hi_ns: 20,
                total: 5,
            },
            Step {
                lo_ns: 110,
                hi_ns: 120,
                total: 9,
            },
        ];
        assert_eq!(value_at(&steps, 14), None);
        assert_eq!(value_at(&steps, 15), Some(5));
        assert_eq!(value_at(&steps, 200), Some(9));
    }

    proptest! {
        /// Whatever the power profile, the phase, the read cost, the pauses between reads and
        /// the window, the true energy is within the upper bound, within the lower one too
        /// where reads see every refresh, and the value lies within the range.
        #[test]
        fn the_range_contains_the_truth(
            powers in proptest::collection::vec(0.05f64..1.0, 8..16),
            phase in 0u64..100,
            read in 1u64..30,
            gaps in proptest::prop_oneof![
                Just(vec![0u64]),
                proptest::collection::vec(0u64..250, 1..8),
            ],
            a in 300u64..900,
            len in 0u64..300,
        ) {
            // Time in units of 0.1 ms; refresh every 10 ms; the power changes at refreshes (a
            // lower bound from the lowest power seen cannot hold for changes it never saw).
            let period = 100u64;
            let power = |t: u64| {
                let k = if t < phase { 0 } else { (t - phase) / period + 1 };
                powers[(k as usize).min(powers.len() - 1)]
            };
            let energy = |t: u64| -> f64 { (0..t).map(power).sum() };
            // Reads and the window in ns: one time unit is 0.1 ms.
            let unit = 100_000u64;
            let mut log = StepLog::new(Period::new(period * unit));
            let mut t = 0;
            // Reads back to back, or with pauses of up to 2.5 refreshes between them: a
            // pause hides refreshes, which must not make the range lie.
            let mut k = 0;
            while t < 1400 {
                let latch = t + read / 2;
                let last_refresh = if latch < phase { 0 } else { phase + (latch - phase) / period * period };
                log.observe(energy(last_refresh) as u64 * 1000, t * unit, (t + read) * unit);
                t += read + gaps[k % gaps.len()];
                k += 1;
            }
            let steps = tightened(&log);
            let b = a + len;
            let truth = (energy(b) - energy(a)) * 1000.0;
            // Without a refresh seen certainly after the window there is nothing to bound yet
            // (a caller reads on until there is).
            let r = resolve(&steps, a * unit, b * unit, None, log.min_power());
            prop_assert!(r.is_some() || gaps != [0], "back-to-back reads see every refresh");
            let Some(r) = r else { return Ok(()) };
            // Raw units are whole: a refresh's value is floored, so allow one unit per edge.
            // The upper bound is the counter's own; the lower one rests on the lowest power
            // seen over a refresh, which holds where every refresh interval is seen.
            if gaps.iter().all(|&g| g == 0) {
                prop_assert!(r.low <= truth + 2000.0, "{:?} vs {}", r, truth);
            }
            prop_assert!(truth <= r.high + 2000.0, "{:?} vs {}", r, truth);
            prop_assert!(r.low <= r.value && r.value <= r.high);
        }
    }
}
