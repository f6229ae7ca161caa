//! The Meter: owns the sources, feeds every reading through one wrap-aware Counter per domain,
//! and hands out Snapshots of cumulative energy. Finding the sources and learning how their
//! counters refresh is in `discover`.

mod discover;
pub use discover::DiscoverConfig;

use crate::clock::monotonic_ns;
use crate::counter::Counter;
use crate::domain::{Domain, DomainKind, Part, Reading};
use crate::error::Result;
use crate::gpu_share::{self, GpuShare};
use crate::refresh::{self, Period, StepLog};
use crate::select::{PathReport, ProblemReport};
use crate::source::Source;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The most any one domain can draw, for telling a real counter step from a reset or garbage:
/// generous on purpose (the largest server sockets draw about 500 W, a GPU about 1000 W).
pub const MAX_POWER_W: f64 = 3000.0;

/// The longest a counter is taken to hold energy back before showing it, where its refresh
/// period is unknown (where it is known, two periods): generous, since a step judged
/// implausible is not counted (RAPL refreshes about every millisecond, NVML every 100 ms).
const REFRESH_SLACK_NS: u64 = 1_000_000_000;

/// A read of a source that has not returned after this long is taken for a hung driver or
/// device (a GPU fallen off the bus, a sensor whose bus is stuck, a file on a frozen FUSE
/// mount): its domains are unknown from then on, until that read returns, and no other read
/// waits for it. Far above any healthy read (RAPL: microseconds; NVML energy: ~3 ms; an ACPI
/// power meter: ~100 ms).
pub const READ_DEADLINE_NS: u64 = 2_000_000_000;

/// How often a power-only domain (a GPU without an energy counter) is read while a window is
/// open: NVML refreshes power every 20-100 ms.
pub const POWER_SAMPLE_NS: u64 = 20_000_000;

/// Cumulative energy of every domain since the meter started, at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC nanoseconds, the midpoint of the reads.
    pub t_ns: u64,
    /// Per domain, in the domain's raw unit, wraps unfolded.
    pub totals: Vec<u64>,
    /// Per domain, the low and high bounds of `totals` where some domain is estimated; empty
    /// when every domain is measured (the bounds are the totals).
    pub low: Vec<u64>,
    pub high: Vec<u64>,
    /// Per domain, the reads that had failed (or did not answer) since the meter started, as
    /// of this snapshot: a domain whose count differs between two snapshots is unknown
    /// between them. Empty: none.
    pub failures: Vec<u64>,
}

impl Snapshot {
    fn failures_of(&self, d: usize) -> u64 {
        self.failures.get(d).copied().unwrap_or(0)
    }
}

/// What happened between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// CLOCK_MONOTONIC nanoseconds of the two edges.
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_ns: u64,
    /// Per domain, in joules, with low and high bounds (equal for measured domains).
    pub joules: Vec<f64>,
    pub joules_low: Vec<f64>,
    pub joules_high: Vec<f64>,
    /// The total as carbonfast defines it: packages + DRAM + GPUs; psys alone where no
    /// package is readable; None when nothing is.
    pub total_j: Option<f64>,
    pub total_range_j: Option<(f64, f64)>,
    /// Per domain: whether its edges were interpolated between the counter's refreshes (a
    /// window shorter than one refresh, or any window on a polled counter whose refreshes
    /// are logged back to its start); its bounds then say where the truth lies.
    pub interpolated: Vec<bool>,
    /// Per domain: a counter in the total that never moved (see STALLED_NS), left out of it.
    pub stalled: Vec<bool>,
    /// Per domain: added to `total_j`. The domains of the total that were read and moved;
    /// and a standby estimate (see `Meter::standby`) where every RAPL counter of the total
    /// stood still, in their place.
    pub counted: Vec<bool>,
    /// Per domain: a read failed or did not answer between the edges (see
    /// `Meter::failure`); its energy is unknown (NaN here) and it is left out of the total.
    pub failed: Vec<bool>,
}

/// A counter in the total that shows no energy at all over this long, since the meter
/// started, is taken for a dead one (where its refresh is not known; see FROZEN_REFRESHES).
pub const STALLED_NS: u64 = 1_000_000_000;

/// A RAPL counter (package, core, uncore, DRAM, psys) refreshes about every millisecond, and
/// even an idle package draws watts: one that shows no energy over this many of its refreshes
/// is frozen (an emulated RAPL returning constants, a static copy of sysfs), not idle.
pub const FROZEN_REFRESHES: u64 = 250;

/// A RAPL counter's refresh, where start-up could not learn it (nothing moved).
const RAPL_REFRESH_NS: u64 = 1_000_000;

/// A stepped counter whose refresh period is at least this long is polled by a background
/// thread while windows are open, so that each refresh is timestamped (NVML: ~100 ms).
pub const POLL_MIN_PERIOD_NS: u64 = 5_000_000;

/// What `Meter::bench_poll` saw.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPoll {
    /// Refreshes of the pacing counter seen since the meter started.
    pub count: u64,
    /// The new ones: midpoint, and width of the interval it is known within (ns).
    pub steps: Vec<(u64, u64)>,
    /// Energy so far of the domains in the total that have no refresh log, in joules.
    pub unlogged_j: f64,
}

/// One source's counting state. Each source has its own lock, held from its read to its
/// counting: a reading applied out of order would look like a wrap, and a slow source (an
/// NVML energy read can take milliseconds) must not hold up the others.
struct State {
    counters: Vec<Counter>,
    raw: Vec<u64>,
    /// When the source was last read (for the sampler's skipping of slow sources).
    last_read_ns: u64,
    /// For power domains: the previous reading (mW, t_ns) and the energy integrated so far.
    power: Vec<PowerIntegral>,
    /// When the counters were last checked (the end of the previous read).
    checked_ns: u64,
}

/// What the reads of one source have shown of its refreshes. Under a lock of its own, taken
/// briefly after each read: whoever looks at the refreshes never waits for a slow read.
struct Observed {
    /// For counters that refresh in steps of a known period: the refreshes seen.
    logs: Vec<Option<StepLog>>,
    /// Start of the last read, and how long it took.
    last_read_ns: u64,
    read_cost_ns: u64,
}

/// How one source's reads have gone: kept apart from its State, whose lock a hung read holds.
struct Health {
    /// When the read in flight started (0: none in flight).
    reading_since: AtomicU64,
    /// A read overran READ_DEADLINE_NS and has not returned: the source is passed over.
    hung: AtomicBool,
    /// Per domain: failed or skipped reads since the meter started.
    failures: Vec<AtomicU64>,
    /// Per domain: the last total counted, for the snapshots of reads that fail.
    last_totals: Vec<AtomicU64>,
    /// Per domain: why it last failed.
    why: Mutex<Vec<Option<String>>>,
}

impl Health {
    fn new(n: usize) -> Self {
        Health {
            reading_since: AtomicU64::new(0),
            hung: AtomicBool::new(false),
            failures: (0..n).map(|_| AtomicU64::new(0)).collect(),
            last_totals: (0..n).map(|_| AtomicU64::new(0)).collect(),
            why: Mutex::new(vec![None; n]),
        }
    }

    fn fail(&self, i: usize, why: &dyn std::fmt::Display) {
        self.failures[i].fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&self.why);
        if w[i].is_none() {
            w[i] = Some(why.to_string());
        }
    }

    fn fail_all(&self, why: &dyn std::fmt::Display) {
        for i in 0..self.failures.len() {
            self.fail(i, why);
        }
    }
}

/// An error as a failure's reason: what went wrong, and the fix where there is one.
fn with_fix(e: &crate::error::Error) -> String {
    match e.fix() {
        Some(fix) if !fix.is_empty() => format!("{e}; {fix}"),
        _ => e.to_string(),
    }
}

/// Which sources a read covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    /// The sampler: sources read more recently than their minimum interval are skipped.
    AllButFresh,
    /// Only the sources that are (not) slow; the other domains' totals are left as they were.
    Speed {
        slow: bool,
    },
    /// One source alone (the poller, and a resolve waiting for a refresh).
    One(usize),
}

#[derive(Debug, Clone, Copy, Default)]
struct PowerIntegral {
    last: Option<(u64, u64)>,
    nanojoules: f64,
    /// Readings above what the hardware can draw, not integrated.
    anomalies: u64,
    /// The energy the rejected readings' intervals may hold, in nanojoules.
    uncertain_nj: f64,
}

impl PowerIntegral {
    /// Trapezoid between the previous and this reading; returns the total in nanojoules.
    fn update(&mut self, milliwatts: u64, t_ns: u64) -> u64 {
        if let Some((mw, t)) = self.last {
            let dt_ns = t_ns.saturating_sub(t) as f64;
            // (mW + mW) / 2 * ns = 1e-3 W * 1e-9 s = 1e-12 J = 1e-3 nJ
            self.nanojoules += (mw + milliwatts) as f64 / 2.0 * dt_ns * 1e-3;
        }
        self.last = Some((milliwatts, t_ns));
        self.nanojoules as u64
    }

    /// As `update`, but a reading above `max_mw` (more than the hardware can draw: a garbage
    /// value, a driver's error code read as a number) is not integrated: the previous reading
    /// stands for the interval, which is noted as holding up to `max_mw` of unknown energy.
    ///
    /// None where no plausible reading has been seen yet: there is nothing to hold, and the
    /// domain is unknown until one comes (never integrated as 0 W).
    fn update_checked(&mut self, milliwatts: u64, t_ns: u64, max_mw: u64) -> Option<u64> {
        match self.last {
            Some((mw, t)) if milliwatts > max_mw => {
                self.anomalies += 1;
                let dt_ns = t_ns.saturating_sub(t) as f64;
                self.uncertain_nj += max_mw.saturating_sub(mw) as f64 * dt_ns * 1e-3;
                Some(self.update(mw, t_ns))
            }
            None if milliwatts > max_mw => {
                self.anomalies += 1;
                None
            }
            _ => Some(self.update(milliwatts, t_ns)),
        }
    }
}

pub struct Meter {
    sources: Vec<Box<dyn Source>>,
    domains: Vec<Domain>,
    in_total: Vec<bool>,
    /// Whether any domain has bounds of its own (an estimate).
    bounded: bool,
    problems: Vec<ProblemReport>,
    paths: Vec<PathReport>,
    /// Per source: its first domain's index, and its state.
    offsets: Vec<usize>,
    states: Vec<Mutex<State>>,
    observed: Vec<Mutex<Observed>>,
    /// Per source: whether any of its counters keeps a refresh log (else reads skip it).
    logged: Vec<bool>,
    /// Per domain: a counter that stood still at start-up while others of its source stepped
    /// (see `learn_periods`): until it moves, no window of any length counts it.
    stuck: Vec<bool>,
    /// Per source: how its reads have gone.
    health: Vec<Health>,
    /// Per domain: an estimate kept beside RAPL counters that start-up did not see move (a
    /// frozen RAPL cannot be told at start-up from an idle moment of a static test tree, or
    /// from a counter yet to refresh). It counts in a window only where every RAPL counter of
    /// the total stood still (see `counted`); otherwise it is not reported.
    standby: Vec<bool>,
}

impl Meter {
    /// A meter over the given sources. Takes the first reading, which every later snapshot is
    /// relative to.
    pub fn new(sources: Vec<Box<dyn Source>>) -> Result<Self> {
        let domains: Vec<Domain> = sources
            .iter()
            .flat_map(|s| s.domains().iter().cloned())
            .collect();
        let mut offsets = Vec::with_capacity(sources.len());
        let mut states = Vec::with_capacity(sources.len());
        let mut observed = Vec::with_capacity(sources.len());
        let mut offset = 0;
        for s in &sources {
            offsets.push(offset);
            offset += s.domains().len();
            states.push(Mutex::new(State {
                counters: s
                    .domains()
                    .iter()
                    .map(|d| Counter::new(d.max_raw))
                    .collect(),
                raw: vec![0; s.domains().len()],
                power: vec![PowerIntegral::default(); s.domains().len()],
                last_read_ns: 0,
                checked_ns: 0,
            }));
            observed.push(Mutex::new(Observed {
                logs: s.domains().iter().map(step_log).collect(),
                last_read_ns: 0,
                read_cost_ns: 0,
            }));
        }
        let problems = sources
            .iter()
            .flat_map(|s| s.problems().iter().map(|e| ProblemReport::new(s.name(), e)))
            .collect();
        let meter = Meter {
            health: sources
                .iter()
                .map(|s| Health::new(s.domains().len()))
                .collect(),
            sources,
            in_total: in_total(&domains),
            stuck: vec![false; domains.len()],
            standby: vec![false; domains.len()],
            bounded: domains.iter().any(|d| d.estimated()),
            domains,
            problems,
            paths: Vec::new(),
            offsets,
            logged: observed
                .iter()
                .map(|o| lock(o).logs.iter().any(Option::is_some))
                .collect(),
            states,
            observed,
        };
        meter.read()?;
        Ok(meter)
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// Whether each domain adds to the total.
    pub fn in_total(&self) -> &[bool] {
        &self.in_total
    }

    /// The CodeCarbon part each domain is reported in (see `parts`): a standby estimate's,
    /// where it stands in, is its own kind's; the others' are as if it were not there.
    pub fn parts(&self) -> Vec<Option<Part>> {
        let n = self.reported();
        let mut out = parts(&self.domains[..n]);
        out.extend(self.domains[n..].iter().map(|d| d.kind.part()));
        out
    }

    /// How many domains come before the standby estimate's (all, where there is none).
    fn reported(&self) -> usize {
        self.standby
            .iter()
            .position(|&s| s)
            .unwrap_or(self.domains.len())
    }

    pub fn sources(&self) -> &[Box<dyn Source>] {
        &self.sources
    }

    /// What could not be read, with reasons and fixes: the chosen path's problems, or every
    /// path's when none could be used.
    pub fn problems(&self) -> &[ProblemReport] {
        &self.problems
    }

    /// Each RAPL path considered at discovery (empty for meters built with `new`).
    pub fn paths(&self) -> &[PathReport] {
        &self.paths
    }

    /// A fresh snapshot.
    pub fn read(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        self.read_into(&mut snap)?;
        Ok(snap)
    }

    /// Reads every source into an existing snapshot; allocates nothing once `snap` has been
    /// filled before.
    pub fn read_into(&self, snap: &mut Snapshot) -> Result<()> {
        self.read_sources(snap, Which::All)
    }

    /// As `read_into`, for the sampler: a source read more recently than its
    /// `min_read_interval_ns` keeps its last reading instead of being read again.
    pub fn sample_into(&self, snap: &mut Snapshot) -> Result<()> {
        self.read_sources(snap, Which::AllButFresh)
    }

    /// Whether any source is slow to read (see `Source::slow`).
    pub fn has_slow_sources(&self) -> bool {
        self.sources.iter().any(|s| s.slow())
    }

    /// Reads only the sources that are slow (`slow`), or only those that are not, into `snap`;
    /// the other domains' totals are left as they were. A caller can read the fast sources at
    /// a window's edge and the slow ones on another thread, then `merge_slow` the two.
    pub fn read_speed_into(&self, snap: &mut Snapshot, slow: bool) -> Result<()> {
        self.read_sources(snap, Which::Speed { slow })
    }

    /// Copies the slow sources' domains from `slow` into `snap`.
    pub fn merge_slow(&self, snap: &mut Snapshot, slow: &Snapshot) {
        for (s, source) in self.sources.iter().enumerate() {
            if source.slow() {
                let r = self.offsets[s]..self.offsets[s] + source.domains().len();
                snap.totals[r.clone()].copy_from_slice(&slow.totals[r.clone()]);
                for d in r.clone() {
                    let f = slow.failures_of(d).max(snap.failures_of(d));
                    if let Some(slot) = snap.failures.get_mut(d) {
                        *slot = f;
                    }
                }
                if self.bounded {
                    snap.low[r.clone()].copy_from_slice(&slow.totals[r.clone()]);
                    snap.high[r.clone()].copy_from_slice(&slow.totals[r]);
                }
            }
        }
    }

    /// Reads the source `s` alone into `snap` (sized for every domain); its refreshes are
    /// logged as by any read.
    pub fn read_source_into(&self, s: usize, snap: &mut Snapshot) -> Result<()> {
        self.read_sources(snap, Which::One(s))
    }

    fn read_sources(&self, snap: &mut Snapshot, which: Which) -> Result<()> {
        let n = self.domains.len();
        snap.totals.resize(n, 0);
        let bounds = if self.bounded { n } else { 0 };
        snap.low.resize(bounds, 0);
        snap.high.resize(bounds, 0);
        snap.failures.resize(n, 0);
        // The snapshot's time is the midpoint of the reads themselves, lock waits excluded.
        let mut span: Option<(u64, u64)> = None;
        for (s, source) in self.sources.iter().enumerate() {
            if source.domains().is_empty() {
                // Listed for its notes and problems only (no sensor found): nothing to read.
                continue;
            }
            match which {
                Which::Speed { slow } if source.slow() != slow => continue,
                Which::One(one) if one != s => continue,
                _ => {}
            }
            let r = self.offsets[s]..self.offsets[s] + source.domains().len();
            let health = &self.health[s];
            let Some(mut guard) = self.state(s) else {
                health.fail_all(&format_args!(
                    "{}: a read did not answer within {} s (a hung driver or device)",
                    source.name(),
                    READ_DEADLINE_NS / 1_000_000_000
                ));
                self.keep_last(s, snap);
                continue;
            };
            let state = &mut *guard;
            let t0 = monotonic_ns();
            let fresh = t0.saturating_sub(state.last_read_ns) < source.min_read_interval_ns();
            // The domains whose read fails now, by index (past 128, any of them: all).
            let mut failed_mask: u128 = 0;
            if !(which == Which::AllButFresh && fresh) {
                health.reading_since.store(t0.max(1), Ordering::Release);
                let read = source.read_each(&mut state.raw, &mut |i, e| {
                    failed_mask |= if i < 128 { 1 << i } else { u128::MAX };
                    health.fail(i, &with_fix(&e));
                });
                health.reading_since.store(0, Ordering::Release);
                if health.hung.load(Ordering::Relaxed) {
                    health.hung.store(false, Ordering::Release);
                }
                if let Err(e) = read {
                    health.fail_all(&with_fix(&e));
                    drop(guard);
                    self.keep_last(s, snap);
                    continue;
                }
                state.last_read_ns = t0;
            }
            let t1 = monotonic_ns();
            span = Some((span.map_or(t0, |(a, _)| a), t1));
            let t = t0 + (t1 - t0) / 2;
            // The most a counter can have advanced since the previous read: its maximum power
            // over the time between the two (plus the read itself), for checking readings.
            let since = t1.saturating_sub(state.checked_ns).max(1);
            state.checked_ns = t1;
            // A domain whose read just failed keeps its last total (it is unknown over any
            // window around this read, by its failure count).
            let failed_now = |i: usize| failed_mask != 0 && (failed_mask >> i.min(127)) & 1 == 1;
            for (i, total) in snap.totals[r.clone()].iter_mut().enumerate() {
                if failed_now(i) {
                    *total = health.last_totals[i].load(Ordering::Relaxed);
                    continue;
                }
                let raw = state.raw[i];
                // The meter's own list: it holds what start-up learned (refresh periods).
                let d = &self.domains[r.start + i];
                *total = match d.reading {
                    Reading::Energy if !d.estimated() => {
                        // A stepped counter shows a whole refresh's energy at once, however
                        // close the reads: the time is that, or more.
                        let refresh = d.update_period_ns.map_or(REFRESH_SLACK_NS, |p| 2 * p);
                        let units = |ns: u64| {
                            let w = d.max_power_w.unwrap_or(MAX_POWER_W);
                            let u = w * d.units_per_joule * ns as f64 * 1e-9;
                            u.min(u64::MAX as f64) as u64
                        };
                        state.counters[i].update_checked(raw, units(since + refresh), units(since))
                    }
                    Reading::Energy => state.counters[i].update(raw),
                    Reading::PowerMilliwatts => {
                        let w = d.max_power_w.unwrap_or(MAX_POWER_W);
                        match state.power[i].update_checked(raw, t, (w * 1e3) as u64) {
                            Some(total) => total,
                            None => {
                                // No plausible reading yet: nothing to integrate from, so the
                                // domain is unknown, never a measured 0 W.
                                health.fail(
                                    i,
                                    &format_args!(
                                        "{}: no plausible reading yet ({raw} mW read, above \
                                         the {w} W it can draw)",
                                        d.name
                                    ),
                                );
                                *total = health.last_totals[i].load(Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                };
                health.last_totals[i].store(*total, Ordering::Relaxed);
            }
            if self.logged[s] && !(which == Which::AllButFresh && fresh) {
                // Still under the source's lock: refreshes are logged in the order read.
                let mut obs = lock(&self.observed[s]);
                obs.last_read_ns = t0;
                obs.read_cost_ns = t1 - t0;
                for (i, (log, &total)) in
                    obs.logs.iter_mut().zip(&snap.totals[r.clone()]).enumerate()
                {
                    if failed_now(i) {
                        continue;
                    }
                    if let Some(log) = log {
                        log.observe(total, t0, t1);
                    }
                }
            }
            if self.bounded {
                snap.low[r.clone()].copy_from_slice(&snap.totals[r.clone()]);
                snap.high[r.clone()].copy_from_slice(&snap.totals[r.clone()]);
                source.read_bounds(&mut snap.low[r.clone()], &mut snap.high[r]);
            }
        }
        for (s, health) in self.health.iter().enumerate() {
            let base = self.offsets[s];
            for (i, f) in health.failures.iter().enumerate() {
                snap.failures[base + i] = f.load(Ordering::Acquire);
            }
        }
        let (a, b) = span.unwrap_or_else(|| {
            let now = monotonic_ns();
            (now, now)
        });
        snap.t_ns = a + (b - a) / 2;
        Ok(())
    }

    /// Source `s`'s counting state, once no other read holds it; None where the read that
    /// holds it has overrun READ_DEADLINE_NS (and from then on, until that read returns).
    fn state(&self, s: usize) -> Option<MutexGuard<'_, State>> {
        let health = &self.health[s];
        if health.hung.load(Ordering::SeqCst) {
            return None;
        }
        let mut tries = 0u32;
        loop {
            match self.states[s].try_lock() {
                Ok(g) => return Some(g),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            if self.overdue(s) {
                return None;
            }
            // Another read of this source is in flight: most take microseconds.
            tries += 1;
            if tries < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }

    /// Whether the read of source `s` in flight has overrun READ_DEADLINE_NS (it is then
    /// marked hung).
    pub fn overdue(&self, s: usize) -> bool {
        let health = &self.health[s];
        let since = health.reading_since.load(Ordering::Acquire);
        let late = since != 0 && monotonic_ns().saturating_sub(since) > READ_DEADLINE_NS;
        if late {
            health.hung.store(true, Ordering::SeqCst);
        }
        late || health.hung.load(Ordering::SeqCst)
    }

    /// Notes that source `s` could not be read at an edge (a slow read that did not come back
    /// in time): its domains are unknown over any window around now.
    pub fn note_failed(&self, s: usize, why: &str) {
        self.health[s].fail_all(&why);
    }

    /// The snapshot of source `s`'s domains where its read failed: their last totals, and
    /// their failures.
    fn keep_last(&self, s: usize, snap: &mut Snapshot) {
        let health = &self.health[s];
        let base = self.offsets[s];
        for (i, t) in health.last_totals.iter().enumerate() {
            snap.totals[base + i] = t.load(Ordering::Relaxed);
            if self.bounded {
                snap.low[base + i] = snap.totals[base + i];
                snap.high[base + i] = snap.totals[base + i];
            }
        }
    }

    /// Why domain `d` last failed to be read, if it ever did.
    pub fn failure(&self, d: usize) -> Option<String> {
        let (s, i) = self.locate(d);
        lock(&self.health[s].why)[i].clone()
    }

    /// Per domain, the failed reads so far (as a snapshot holds them).
    pub fn failures_now(&self, out: &mut Vec<u64>) {
        out.clear();
        for h in &self.health {
            out.extend(h.failures.iter().map(|f| f.load(Ordering::SeqCst)));
        }
    }

    /// Energy per domain between two snapshots of this meter, and the total.
    pub fn window(&self, start: &Snapshot, end: &Snapshot) -> Window {
        let joules_of = |a: &[u64], b: &[u64]| -> Vec<f64> {
            self.domains
                .iter()
                .zip(a.iter().zip(b))
                .map(|(d, (&a, &b))| b.wrapping_sub(a) as f64 / d.units_per_joule)
                .collect()
        };
        let failed: Vec<bool> = (0..self.domains.len())
            .map(|d| start.failures_of(d) != end.failures_of(d))
            .collect();
        let unknown = |mut j: Vec<f64>| {
            for (j, _) in j.iter_mut().zip(&failed).filter(|(_, &f)| f) {
                *j = f64::NAN;
            }
            j
        };
        let joules = unknown(joules_of(&start.totals, &end.totals));
        let (joules_low, joules_high) = if self.bounded {
            let low = unknown(joules_of(&start.low, &end.low));
            let high = unknown(joules_of(&start.high, &end.high));
            // A value always lies inside its own range.
            let low = (low.iter().zip(&joules)).map(|(&l, &j)| l.min(j)).collect();
            let high = (high.iter().zip(&joules))
                .map(|(&h, &j)| h.max(j))
                .collect();
            (low, high)
        } else {
            (joules.clone(), joules.clone())
        };
        let duration_ns = end.t_ns.saturating_sub(start.t_ns);
        let stalled: Vec<bool> = (0..self.domains.len())
            .map(|d| !failed[d] && self.stalled(d, duration_ns, end))
            .collect();
        let counted = self.counted(&stalled, &failed);
        let total_j = sum_in_total(&counted, &joules);
        let total_range_j =
            sum_in_total(&counted, &joules_low).zip(sum_in_total(&counted, &joules_high));
        Window {
            start_ns: start.t_ns,
            end_ns: end.t_ns,
            duration_ns,
            interpolated: vec![false; joules.len()],
            stalled,
            counted,
            failed,
            joules,
            joules_low,
            joules_high,
            total_j,
            total_range_j,
        }
    }

    /// Which domains a window with these stalled and failed domains adds up: those of the
    /// total that were read and moved; and the standby estimate, where every RAPL counter of
    /// the total stood still.
    fn counted(&self, stalled: &[bool], failed: &[bool]) -> Vec<bool> {
        let frozen = self.rapl_frozen(|d| stalled[d]);
        (0..self.domains.len())
            .map(|d| match self.standby[d] {
                true => frozen && !failed[d],
                false => self.in_total[d] && !stalled[d] && !failed[d],
            })
            .collect()
    }

    /// Whether this meter has a standby estimate and every RAPL counter of its total is
    /// `stalled`.
    fn rapl_frozen(&self, stalled: impl Fn(usize) -> bool) -> bool {
        let mut rapl = (0..self.domains.len())
            .filter(|&d| self.rapl_in_total(d))
            .peekable();
        self.standby.contains(&true) && rapl.peek().is_some() && rapl.all(stalled)
    }

    /// Whether domain `d` is a counter of the chosen RAPL path in the total.
    fn rapl_in_total(&self, d: usize) -> bool {
        let dom = &self.domains[d];
        self.in_total[d] && matches!(dom.source, "powercap" | "msr" | "perf")
    }

    /// Per domain: whether it is a standby estimate (see `standby`).
    pub fn standby(&self) -> &[bool] {
        &self.standby
    }

    /// A counter in the total that has not moved at all since the meter started, over a
    /// second or more (or from start-up, beside counters that stepped), is no working counter
    /// (an idle package still draws watts): it is treated as unreadable, not as a measured 0 J.
    fn stalled(&self, d: usize, duration_ns: u64, end: &Snapshot) -> bool {
        let dom = &self.domains[d];
        self.in_total[d]
            && dom.reading == Reading::Energy
            && !dom.estimated()
            && (duration_ns >= self.frozen_after_ns(d) || self.stuck[d])
            && end.totals[d] == 0
    }

    /// How long counter `d` may show no energy at all before it is taken for a frozen one:
    /// FROZEN_REFRESHES of its refresh where that is known (learned, or RAPL's ~1 ms), else
    /// STALLED_NS.
    pub fn frozen_after_ns(&self, d: usize) -> u64 {
        let dom = &self.domains[d];
        let rapl = dom.kind.is_rapl();
        match dom.update_period_ns.filter(|&p| p > 0) {
            Some(p) => p.saturating_mul(FROZEN_REFRESHES).min(STALLED_NS),
            None if rapl => RAPL_REFRESH_NS * FROZEN_REFRESHES,
            None => STALLED_NS,
        }
    }

    /// The total energy between two snapshots, as `window` counts it, without its per-domain
    /// detail or any wait for a refresh: what a tally of many windows adds up (their counter
    /// differences telescope, so the sum is exact where the windows are back to back).
    pub fn total_between(&self, start: &Snapshot, end: &Snapshot) -> Option<f64> {
        let duration_ns = end.t_ns.saturating_sub(start.t_ns);
        let frozen = self.rapl_frozen(|d| self.stalled(d, duration_ns, end));
        let mut total = None;
        for (d, dom) in self.domains.iter().enumerate() {
            let failed = start.failures_of(d) != end.failures_of(d);
            let counts = match self.standby[d] {
                true => frozen,
                false => self.in_total[d] && !self.stalled(d, duration_ns, end),
            };
            if counts && !failed {
                let raw = end.totals[d].wrapping_sub(start.totals[d]);
                *total.get_or_insert(0.0) += raw as f64 / dom.units_per_joule;
            }
        }
        total
    }

    /// Resolves `w` (from `window`) against the counters' refreshes, where they refresh in
    /// steps: a window shorter than a counter's refresh gets both edges interpolated between
    /// the refreshes around them, and a range the truth lies in. On a polled counter (one that
    /// refreshes slowly, such as an H100's), a longer window is interpolated too, and keeps its
    /// counter difference only where its start is older than the refresh log; it gains the
    /// range either way. `wait(source, t_ns)` returns once a refresh after `t_ns` has been seen
    /// (or it gives up); a domain it gave up on keeps its counter difference.
    pub fn refine(&self, w: &mut Window, wait: &dyn Fn(usize, u64) -> bool) {
        let (a, b) = (w.start_ns, w.end_ns);
        let mut changed = false;
        for (s, source) in self.sources.iter().enumerate() {
            let polled = self.polled(s);
            for i in 0..source.domains().len() {
                let d = self.offsets[s] + i;
                if w.failed.get(d) == Some(&true) {
                    continue;
                }
                let Some(period) = self.step_period(s, i) else {
                    continue;
                };
                let short = w.duration_ns < period.nominal_ns;
                if !short && !polled {
                    continue;
                }
                if !self.refreshed_after(s, i, b, wait) {
                    continue;
                }
                let Some((mut steps, min_power)) = self.with_log(s, i, |log| {
                    (log.steps().collect::<Vec<_>>(), log.min_power())
                }) else {
                    continue;
                };
                refresh::tighten(&mut steps, period);
                let upj = self.domains[d].units_per_joule;
                let counted = (!short).then(|| (w.joules[d] * upj).round() as u64);
                if let Some(r) = refresh::resolve(&steps, a, b, counted, min_power) {
                    w.joules[d] = r.value / upj;
                    // A value always lies inside its own range.
                    w.joules_low[d] = r.low.min(r.value) / upj;
                    w.joules_high[d] = r.high.max(r.value) / upj;
                    w.interpolated[d] = r.interpolated;
                    changed = true;
                }
            }
        }
        if changed {
            w.total_j = sum_in_total(&w.counted, &w.joules);
            w.total_range_j = sum_in_total(&w.counted, &w.joules_low)
                .zip(sum_in_total(&w.counted, &w.joules_high));
        }
    }

    /// Whether domain `i` of source `s` has shown a refresh after `t_ns`, waiting for one
    /// with `wait` if it has not yet.
    fn refreshed_after(
        &self,
        s: usize,
        i: usize,
        t_ns: u64,
        wait: &dyn Fn(usize, u64) -> bool,
    ) -> bool {
        let seen = || self.with_log(s, i, |log| log.has_step_after(t_ns)) == Some(true);
        seen() || (wait(s, t_ns) && seen())
    }

    /// `refine` for a meter read on the caller's thread: a missing refresh is waited for by
    /// reading the counter until it refreshes (a millisecond at most on RAPL).
    pub fn refine_inline(&self, w: &mut Window) {
        self.refine(w, &|s, t| {
            self.poll_until_step(s, t, &mut Snapshot::default())
        });
    }

    /// Reads source `s` until one of its counters shows a refresh after `t_ns`, for at most
    /// three of its refresh periods and 10 ms (a busy machine may deschedule the reader).
    pub fn poll_until_step(&self, s: usize, t_ns: u64, scratch: &mut Snapshot) -> bool {
        let Some(period) = (0..self.sources[s].domains().len())
            .filter_map(|i| self.step_period(s, i))
            .map(|p| p.max_ns)
            .max()
        else {
            return false;
        };
        let deadline = monotonic_ns() + 3 * period + 10_000_000;
        loop {
            if self.read_source_into(s, scratch).is_err() {
                return false;
            }
            let seen = lock(&self.observed[s])
                .logs
                .iter()
                .flatten()
                .all(|log| log.has_step_after(t_ns));
            if seen {
                return true;
            }
            if monotonic_ns() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// The counter that paces a benchmark: of the domains in the total that refresh in steps,
    /// the one refreshing slowest, with its period.
    pub fn pacing_domain(&self) -> Option<(usize, Period)> {
        (0..self.domains.len())
            .filter(|&d| self.in_total[d])
            .filter_map(|d| {
                let (s, i) = self.locate(d);
                self.step_period(s, i).map(|p| (d, p))
            })
            .max_by_key(|(_, p)| p.nominal_ns)
    }

    /// One look at the counters for a benchmark between two refreshes of `pacing`: reads every
    /// source except slow ones whose counters are all logged (the poller reads those), and
    /// returns the refreshes of `pacing` seen since `since` (the count `bench_poll` returned
    /// before; None: from now), as their midpoints and the widths of the intervals they are
    /// known within, with the new count, and the energy so far
    /// of the domains in the total that have no refresh log, in joules.
    pub fn bench_poll(
        &self,
        snap: &mut Snapshot,
        pacing: usize,
        since: Option<u64>,
    ) -> Result<BenchPoll> {
        let n = self.domains.len();
        snap.totals.resize(n, 0);
        let mut unlogged = 0.0;
        for s in 0..self.sources.len() {
            let range = self.offsets[s]..self.offsets[s] + self.sources[s].domains().len();
            let logged: Vec<bool> = {
                let obs = lock(&self.observed[s]);
                obs.logs.iter().map(Option::is_some).collect()
            };
            let needed = range
                .clone()
                .any(|d| self.in_total[d] && !logged[d - range.start]);
            if self.sources[s].slow() && !needed {
                continue;
            }
            self.read_sources(snap, Which::One(s))?;
            for d in range.clone() {
                if self.in_total[d] && !logged[d - range.start] {
                    unlogged += snap.totals[d] as f64 / self.domains[d].units_per_joule;
                }
            }
        }
        let (s, i) = self.locate(pacing);
        let (count, steps) = self
            .with_log(s, i, |log| {
                let steps = match since {
                    Some(c) => log
                        .steps_since(c)
                        .map(|st| (st.mid_ns(), st.hi_ns - st.lo_ns))
                        .collect(),
                    None => Vec::new(),
                };
                (log.count(), steps)
            })
            .unwrap_or_default();
        Ok(BenchPoll {
            count,
            steps,
            unlogged_j: unlogged,
        })
    }

    /// The energy between `t1_ns` and `t2_ns` of the domains in the total that have a refresh
    /// log, in joules, each interpolated between its refreshes (exact at a refresh's midpoint,
    /// as `bench_poll` gives them). `wait` as for `refine`. None where a log does not cover
    /// the interval.
    pub fn logged_energy(
        &self,
        t1_ns: u64,
        t2_ns: u64,
        wait: &dyn Fn(usize, u64) -> bool,
    ) -> Option<f64> {
        let mut joules = 0.0;
        for d in (0..self.domains.len()).filter(|&d| self.in_total[d]) {
            let (s, i) = self.locate(d);
            if self.step_period(s, i).is_none() {
                continue;
            }
            if !self.refreshed_after(s, i, t2_ns, wait) {
                return None;
            }
            let steps = self.with_log(s, i, |log| log.steps().collect::<Vec<_>>())?;
            let e = refresh::interpolate(&steps, t2_ns)? - refresh::interpolate(&steps, t1_ns)?;
            joules += e / self.domains[d].units_per_joule;
        }
        Some(joules)
    }

    /// The source a domain belongs to, and its index there.
    pub fn locate(&self, d: usize) -> (usize, usize) {
        let s = self.offsets.partition_point(|&o| o <= d) - 1;
        (s, d - self.offsets[s])
    }

    /// The refresh period of domain `i` of source `s`, where it refreshes in steps.
    pub fn step_period(&self, s: usize, i: usize) -> Option<Period> {
        self.with_log(s, i, StepLog::period)
    }

    /// Runs `f` on the refresh log of domain `i` of source `s`, under that source's lock.
    pub fn with_log<R>(&self, s: usize, i: usize, f: impl FnOnce(&StepLog) -> R) -> Option<R> {
        lock(&self.observed[s]).logs[i].as_ref().map(f)
    }

    /// The meter-wide index of domain `i` of source `s`.
    pub fn index(&self, s: usize, i: usize) -> usize {
        self.offsets[s] + i
    }

    /// When source `s` was last read (the start of that read).
    pub fn last_read_ns(&self, s: usize) -> u64 {
        lock(&self.observed[s]).last_read_ns
    }

    /// Whether source `s` is polled in the background while windows are open: it is slow to
    /// read, or it refreshes slowly, and every one of its domains has a refresh log (so that
    /// an edge can take all of them from the logs).
    pub fn polled(&self, s: usize) -> bool {
        let obs = lock(&self.observed[s]);
        let logged = !obs.logs.is_empty() && obs.logs.iter().all(Option::is_some);
        let slow_refresh = obs
            .logs
            .iter()
            .flatten()
            .any(|l| l.period().nominal_ns >= POLL_MIN_PERIOD_NS);
        logged && (self.sources[s].slow() || slow_refresh)
    }

    /// How long the last read of source `s` took.
    pub fn read_cost_ns(&self, s: usize) -> u64 {
        lock(&self.observed[s]).read_cost_ns
    }

    /// How often the meter must be read while a window is open: so that no counter wraps
    /// twice between two reads if each domain drew `max_power_w` (half the shortest wrap
    /// period), and every POWER_SAMPLE_NS where a domain reports power to be integrated.
    /// None when neither applies.
    pub fn guard_period_ns(&self, max_power_w: f64) -> Option<u64> {
        let wraps = self
            .domains
            .iter()
            .filter(|d| d.reading == Reading::Energy && d.max_raw < u64::MAX)
            .map(|d| (d.range_j() / max_power_w * 0.5 * 1e9).max(1e6) as u64);
        let power = self
            .domains
            .iter()
            .filter(|d| d.reading == Reading::PowerMilliwatts)
            .map(|_| POWER_SAMPLE_NS);
        wraps.chain(power).min()
    }

    /// Per domain: readings that could not be explained (a counter that went back, jumped
    /// further than MAX_POWER_W could take it, or read past its range; a power reading above
    /// what the hardware can draw), and the energy in
    /// joules that may be missing because of them or because the reader was starved past a
    /// wrap.
    pub fn anomalies(&self) -> Vec<(u64, f64)> {
        let mut out = Vec::with_capacity(self.domains.len());
        for s in 0..self.states.len() {
            let Some(st) = self.state(s) else {
                // Its read hung: nothing known of it past the failure noted.
                out.extend((0..self.sources[s].domains().len()).map(|_| (0, 0.0)));
                continue;
            };
            for (i, (c, p)) in st.counters.iter().zip(&st.power).enumerate() {
                let d = &self.domains[self.offsets[s] + i];
                if d.reading == Reading::PowerMilliwatts {
                    out.push((p.anomalies, p.uncertain_nj * 1e-9));
                } else {
                    out.push((c.anomalies(), c.uncertain() as f64 / d.units_per_joule));
                }
            }
        }
        out
    }

    /// How many times each domain's counter has wrapped.
    pub fn wraps(&self) -> Vec<u64> {
        (0..self.states.len())
            .flat_map(|s| match self.state(s) {
                Some(st) => st.counters.iter().map(Counter::wraps).collect::<Vec<_>>(),
                None => vec![0; self.sources[s].domains().len()],
            })
            .collect()
    }

    /// Per domain, for each GPU: the share of its energy that belongs to the processes `pids`
    /// (as the driver numbers them) since `since_ns` (CLOCK_MONOTONIC), from its source's
    /// process list and per-process samples (see [`crate::gpu_share`]). None for the other
    /// domains, and for a GPU whose source knows no processes or whose reads have hung (its
    /// library would hang this call too). Not for the hot path: it calls the vendor library
    /// and allocates; a window's end calls it once.
    pub fn gpu_shares(&self, pids: &[u32], since_ns: u64) -> Vec<Option<GpuShare>> {
        (0..self.domains.len())
            .map(|d| {
                if self.domains[d].kind != DomainKind::Gpu {
                    return None;
                }
                let (s, i) = self.locate(d);
                if self.health[s].hung.load(Ordering::SeqCst) {
                    return None;
                }
                let procs = self.sources[s].gpu_processes(i, since_ns)?;
                Some(gpu_share::share(&procs, pids))
            })
            .collect()
    }
}

/// A refresh log for a counter whose refresh period is known.
fn step_log(d: &Domain) -> Option<StepLog> {
    let period = d.update_period_ns.filter(|&p| p > 0)?;
    (d.reading == Reading::Energy && !d.estimated()).then(|| StepLog::new(Period::new(period)))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the counters consistent (update is one
    // assignment), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which domains make up the total: the most complete reading the machine has, never a part
/// added to what covers it.
/// - A platform meter (ACPI power meter, Jetson VDD_IN) covers everything: alone the total.
/// - Else superchip modules (Grace) cover their CPU, memory and GPU: they alone are the total.
/// - Else packages, DRAM and GPUs; psys alone where there is no package (it covers the
///   platform, so it never adds to packages).
pub fn in_total(domains: &[Domain]) -> Vec<bool> {
    in_total_of_kinds(&domains.iter().map(|d| d.kind).collect::<Vec<_>>())
}

/// `in_total` for the kinds of a meter's domains, in their order.
pub fn in_total_of_kinds(kinds: &[DomainKind]) -> Vec<bool> {
    let has = |kind| kinds.contains(&kind);
    let whole = if has(DomainKind::Platform) {
        Some(DomainKind::Platform)
    } else if has(DomainKind::Module) {
        Some(DomainKind::Module)
    } else if !has(DomainKind::Package) && has(DomainKind::Psys) {
        Some(DomainKind::Psys)
    } else {
        None
    };
    kinds
        .iter()
        .map(|&k| match whole {
            Some(kind) => k == kind,
            None => k.counts_in_total(),
        })
        .collect()
}

/// The CodeCarbon part (cpu, gpu, ram) each domain's energy is reported in, whatever the
/// total is: a package is CPU, DRAM is RAM, a GPU is GPU, each as it measured. psys stands
/// for the CPU where no package is measured (it covers the packages); a platform meter or a
/// module is no part (it covers them all), and core, uncore and parts sit inside another.
pub fn parts(domains: &[Domain]) -> Vec<Option<Part>> {
    parts_of_kinds(&domains.iter().map(|d| d.kind).collect::<Vec<_>>())
}

/// `parts` for the kinds of a meter's domains, in their order.
pub fn parts_of_kinds(kinds: &[DomainKind]) -> Vec<Option<Part>> {
    let packages = kinds.contains(&DomainKind::Package);
    kinds
        .iter()
        .map(|&kind| match kind {
            DomainKind::Psys if !packages => Some(Part::Cpu),
            kind => kind.part(),
        })
        .collect()
}

fn sum_in_total(in_total: &[bool], joules: &[f64]) -> Option<f64> {
    let mut any = false;
    let mut sum = 0.0;
    for (&counted, &j) in in_total.iter().zip(joules) {
        if counted {
            any = true;
            sum += j;
        }
    }
    any.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::path::{Path, PathBuf};

    fn domain(name: &str, kind: DomainKind) -> Domain {
        Domain {
            name: name.into(),
            kind,
            source: "test",
            path: PathBuf::from(name),
            units_per_joule: 1.0,
            max_raw: 100,
            reading: crate::domain::Reading::Energy,
            label: String::new(),
            update_period_ns: None,
            max_power_w: None,
            estimate: None,
        }
    }

    #[test]
    fn total_adds_packages_and_dram_but_not_core_uncore_psys() {
        let ds = [
            domain("package-0", DomainKind::Package),
            domain("core-0", DomainKind::Core),
            domain("uncore-0", DomainKind::Uncore),
            domain("dram-0", DomainKind::Dram),
            domain("psys", DomainKind::Psys),
        ];
        assert_eq!(
            sum_in_total(&in_total(&ds), &[10.0, 6.0, 2.0, 3.0, 50.0]),
            Some(13.0)
        );
    }

    #[test]
    fn parts_are_what_each_measured_whatever_the_total() {
        let ds = [
            domain("power-meter", DomainKind::Platform),
            domain("package-0", DomainKind::Package),
            domain("core-0", DomainKind::Core),
            domain("dram-0", DomainKind::Dram),
            domain("gpu-0", DomainKind::Gpu),
            domain("psys", DomainKind::Psys),
        ];
        assert_eq!(in_total(&ds), [true, false, false, false, false, false]);
        assert_eq!(
            parts(&ds),
            [
                None,
                Some(Part::Cpu),
                None,
                Some(Part::Ram),
                Some(Part::Gpu),
                None
            ]
        );
        let psys_only = [
            domain("psys", DomainKind::Psys),
            domain("dram-0", DomainKind::Dram),
        ];
        assert_eq!(parts(&psys_only), [Some(Part::Cpu), Some(Part::Ram)]);
    }

    #[test]
    fn total_is_psys_when_no_package_is_readable() {
        let ds = [
            domain("psys", DomainKind::Psys),
            domain("dram-0", DomainKind::Dram),
        ];
        assert_eq!(sum_in_total(&in_total(&ds), &[40.0, 3.0]), Some(40.0));
    }

    #[test]
    fn a_platform_meter_alone_is_the_total_and_its_parts_are_beside_it() {
        let ds = [
            domain("package-0", DomainKind::Package),
            domain("dram-0", DomainKind::Dram),
            domain("gpu-0", DomainKind::Gpu),
            domain("module-0", DomainKind::Module),
            domain("platform-0", DomainKind::Platform),
            domain("platform-1", DomainKind::Platform),
            domain("rail-0", DomainKind::Part),
        ];
        assert_eq!(
            sum_in_total(&in_total(&ds), &[10.0, 3.0, 150.0, 300.0, 400.0, 20.0, 5.0]),
            Some(420.0)
        );
    }

    #[test]
    fn superchip_modules_are_the_total_where_no_platform_meter_is() {
        let ds = [
            domain("package-0", DomainKind::Package),
            domain("core-0", DomainKind::Core),
            domain("gpu-0", DomainKind::Gpu),
            domain("module-0", DomainKind::Module),
            domain("module-1", DomainKind::Module),
        ];
        assert_eq!(
            sum_in_total(&in_total(&ds), &[10.0, 6.0, 150.0, 300.0, 250.0]),
            Some(550.0)
        );
    }

    #[test]
    fn a_power_reading_past_the_hardware_is_held_and_noted() {
        let mut p = PowerIntegral::default();
        p.update_checked(100_000, 0, 700_000); // 100 W at t = 0
                                               // 4.3 GW for a second: the 100 W before stands for it.
        assert_eq!(
            p.update_checked(4_294_967_295, 1_000_000_000, 700_000),
            Some(100_000_000_000)
        );
        assert_eq!(p.anomalies, 1);
        // Up to 700 W - 100 W over that second may be missing: 600 J.
        assert!((p.uncertain_nj * 1e-9 - 600.0).abs() < 1e-6);
        // Plausible again: integrated as before.
        p.update_checked(100_000, 2_000_000_000, 700_000);
        assert_eq!(p.nanojoules as u64, 200_000_000_000);
        // A first reading past the hardware gives nothing to integrate from: unknown until
        // a plausible one comes, which starts the integral.
        let mut q = PowerIntegral::default();
        assert_eq!(q.update_checked(u64::MAX, 0, 700_000), None);
        assert_eq!(q.update_checked(0, 1_000_000_000, 700_000), Some(0));
        assert_eq!(q.anomalies, 1);
    }

    #[test]
    fn total_of_nothing_is_none_not_zero() {
        assert_eq!(sum_in_total(&in_total(&[]), &[]), None);
        let ds = [domain("core-0", DomainKind::Core)];
        assert_eq!(sum_in_total(&in_total(&ds), &[1.0]), None);
    }

    /// A counter that advances by one on every read, as seen in read order.
    struct TickingSource {
        domains: Vec<Domain>,
        next: std::sync::atomic::AtomicU64,
    }

    impl Source for TickingSource {
        fn name(&self) -> &'static str {
            "ticking"
        }
        fn root(&self) -> &Path {
            Path::new("/")
        }
        fn domains(&self) -> &[Domain] {
            &self.domains
        }
        fn read_raw(&self, out: &mut [u64]) -> Result<()> {
            let v = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            out[0] = v % (self.domains[0].max_raw + 1);
            Ok(())
        }
        fn problems(&self) -> &[Error] {
            &[]
        }
        fn notes(&self) -> &[String] {
            &[]
        }
    }

    #[test]
    fn concurrent_reads_are_counted_in_the_order_they_were_read() {
        // Were a reading applied after a later one, the counter would see a false wrap.
        let mut d = domain("package-0", DomainKind::Package);
        d.max_raw = 1_000;
        d.units_per_joule = 1e9; // a nanojoule a tick: a plausible pace
        let meter = Meter::new(vec![Box::new(TickingSource {
            domains: vec![d],
            next: 0.into(),
        })])
        .unwrap();
        let threads = 4;
        let reads_per_thread = 5_000;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut snap = meter.read().unwrap();
                    for _ in 1..reads_per_thread {
                        meter.read_into(&mut snap).unwrap();
                    }
                });
            }
        });
        let last = meter.read().unwrap();
        // Every read advanced the counter by one; Meter::new took the baseline read.
        assert_eq!(last.totals[0], (threads * reads_per_thread + 1) as u64);
        assert_eq!(meter.wraps()[0], last.totals[0] / 1_001);
    }
}
