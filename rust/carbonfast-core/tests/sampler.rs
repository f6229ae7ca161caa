//! The sampler on fake sources whose readings are functions of time, so the truth is known.

use carbonfast_core::clock::monotonic_ns;
use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result, Sampler, SamplerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A counter drawing `watts(t)` and wrapping after `max_raw`, in microjoules; or, for
/// Reading::PowerMilliwatts, the instantaneous power.
struct ClockSource {
    domains: Vec<Domain>,
    t0: u64,
    watts: fn(f64) -> f64,
    read_delay: Duration,
    min_interval_ns: u64,
    /// A counter that refreshes in steps: it shows the energy as of the latest multiple of
    /// this many ns since t0.
    refresh_ns: Option<u64>,
    reads: std::sync::atomic::AtomicU64,
}

impl ClockSource {
    fn new(reading: Reading, max_raw: u64, watts: fn(f64) -> f64) -> Self {
        ClockSource {
            domains: vec![Domain {
                name: "package-0".into(),
                kind: DomainKind::Package,
                source: "clock",
                path: PathBuf::from("/fake"),
                units_per_joule: if reading == Reading::Energy { 1e6 } else { 1e9 },
                max_raw,
                reading,
                label: String::new(),
                update_period_ns: None,
                max_power_w: None,
                estimate: None,
            }],
            t0: monotonic_ns(),
            watts,
            read_delay: Duration::ZERO,
            min_interval_ns: 0,
            refresh_ns: None,
            reads: 0.into(),
        }
    }
}

impl Source for ClockSource {
    fn name(&self) -> &'static str {
        "clock"
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn min_read_interval_ns(&self) -> u64 {
        self.min_interval_ns
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.read_delay.is_zero() {
            std::thread::sleep(self.read_delay);
        }
        let ns = monotonic_ns() - self.t0;
        let ns = self.refresh_ns.map_or(ns, |p| ns / p * p);
        let t = ns as f64 * 1e-9;
        out[0] = match self.domains[0].reading {
            // Constant power only (the energy of a varying profile would need its integral).
            Reading::Energy => {
                let uj = ((self.watts)(t) * t * 1e6) as u64;
                self.domains[0]
                    .max_raw
                    .checked_add(1)
                    .map_or(uj, |m| uj % m)
            }
            Reading::PowerMilliwatts => ((self.watts)(t) * 1e3) as u64,
        };
        Ok(())
    }
    fn problems(&self) -> &[Error] {
        &[]
    }
    fn notes(&self) -> &[String] {
        &[]
    }
}

fn meter(src: ClockSource) -> Arc<Meter> {
    Arc::new(Meter::new(vec![Box::new(src)]).unwrap())
}

fn sampling(hz: f64, capacity: usize) -> SamplerConfig {
    SamplerConfig {
        sample_hz: Some(hz),
        capacity,
        ..SamplerConfig::default()
    }
}

fn trace(s: &Sampler) -> Vec<Vec<f64>> {
    let (rows, width) = s.trace_len();
    let mut buf = vec![0.0; rows * width];
    let n = s.trace_into(&mut buf);
    buf.chunks(width).take(n).map(<[f64]>::to_vec).collect()
}

#[test]
fn samples_at_the_asked_rate_without_drift() {
    let m = meter(ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0));
    let s = Sampler::start(m, &sampling(200.0, 1000)).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let rows = trace(&s);
    let s_missed = s.stats().missed;
    drop(s);
    let n = rows.len();
    let stats_missed = s_missed;
    // A busy test machine may make a wakeup late, and then that deadline is counted missed.
    assert!(
        n as u64 + stats_missed >= 185 && n <= 205,
        "{n} samples, {stats_missed} missed"
    );
    // Absolute deadlines: sample k lands at t0 + k * 5 ms; a late wakeup delays that sample
    // only, and the schedule does not drift, so most samples sit on their deadline.
    let t0 = rows[0][0];
    let mut residuals: Vec<f64> = rows
        .iter()
        .map(|r| {
            let k = ((r[0] - t0) / 0.005).round();
            r[0] - t0 - k * 0.005
        })
        .collect();
    residuals.sort_by(f64::total_cmp);
    // The schedule's phase, robust to the first sample being late itself.
    let phase = residuals[residuals.len() / 2];
    let mut deviations: Vec<f64> = residuals.iter().map(|r| (r - phase).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let median = deviations[deviations.len() / 2];
    assert!(
        median < 0.001,
        "median distance from the deadline {median} s"
    );
    let span = rows[n - 1][0] - t0;
    assert!((span - 0.995).abs() < 0.02, "{n} samples spanning {span} s");
}

#[test]
fn a_full_ring_drops_the_oldest_and_counts_it() {
    let m = meter(ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0));
    let s = Sampler::start(m, &sampling(500.0, 10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rows = trace(&s);
    let stats = s.stats();
    drop(s);
    assert_eq!(rows.len(), 10);
    assert!(stats.samples > 50);
    // Stats and ring are read at slightly different instants; the thread may add one between.
    assert!(stats.dropped + 10 >= stats.samples - 1 && stats.dropped + 10 <= stats.samples + 1);
    assert!(rows.windows(2).all(|w| w[1][0] > w[0][0]), "oldest first");
}

#[test]
fn slow_reads_count_missed_deadlines_instead_of_bursting() {
    let mut src = ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0);
    src.read_delay = Duration::from_millis(12);
    let m = meter(src);
    let s = Sampler::start(m, &sampling(200.0, 100)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let stats = s.stats();
    drop(s);
    // Each 12 ms read overruns two 5 ms deadlines; ~50 reads in 0.6 s, not 120.
    assert!(stats.samples < 70, "{stats:?}");
    assert!(stats.missed >= stats.samples, "{stats:?}");
}

#[test]
fn a_trace_of_a_known_power_profile_matches_it() {
    // 10 W for the first 0.3 s, 30 W after: the meter integrates the power (trapezoid).
    let profile = |t: f64| if t < 0.3 { 10.0 } else { 30.0 };
    let m = meter(ClockSource::new(
        Reading::PowerMilliwatts,
        u64::MAX,
        profile,
    ));
    let s = Sampler::start(m, &sampling(1000.0, 10_000)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let rows = trace(&s);
    drop(s);
    let t_start = rows[0][0];
    let mut checked = 0;
    for w in rows.windows(2) {
        let (t, p) = (w[1][0] - t_start, (w[1][1] - w[0][1]) / (w[1][0] - w[0][0]));
        let expected = if t < 0.28 {
            10.0
        } else if t > 0.32 {
            30.0
        } else {
            continue; // the step itself
        };
        assert!((p - expected).abs() < 0.01 * expected, "{p} W at {t} s");
        checked += 1;
    }
    assert!(checked > 400, "{checked} intervals checked");
}

#[test]
fn a_trace_of_a_stepped_counter_shows_its_power_not_its_steps() {
    // 20 W on a counter that refreshes every 10 ms, sampled at 1 kHz: read as it is, nine
    // samples in ten would be 0 W and the tenth 200 W.
    const PERIOD: u64 = 10_000_000;
    let mut src = ClockSource::new(Reading::Energy, u64::MAX, |_| 20.0);
    src.refresh_ns = Some(PERIOD);
    src.domains[0].update_period_ns = Some(PERIOD);
    let m = meter(src);
    let s = Sampler::start(m, &sampling(1000.0, 10_000)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let rows = trace(&s);
    drop(s);
    assert!(rows.len() > 300, "{} rows", rows.len());
    // Before the first refresh the sampler can place, and after the last one it has seen, a
    // sample is unknown: NaN, never 0 W.
    let known: Vec<usize> = (0..rows.len()).filter(|&r| !rows[r][1].is_nan()).collect();
    let (first, last) = (known[0], *known.last().unwrap());
    assert!(first < 30, "first known sample: {first}");
    assert!(
        rows.len() - last < 30,
        "{} unknown at the end",
        rows.len() - last
    );
    assert_eq!(
        known.len(),
        last - first + 1,
        "a gap among the known samples"
    );
    let mut powers: Vec<f64> = (first + 1..=last)
        .map(|r| (rows[r][1] - rows[r - 1][1]) / (rows[r][0] - rows[r - 1][0]))
        .collect();
    powers.sort_by(f64::total_cmp);
    let median = powers[powers.len() / 2];
    assert!((median - 20.0).abs() < 1.0, "median {median} W");
    // Reads of a microsecond every millisecond place each refresh within about a millisecond of
    // a 10 ms period; a sample late on a busy machine may place one a few more off.
    let close = powers.iter().filter(|&&p| (p - 20.0).abs() < 4.0).count();
    assert!(close * 10 >= powers.len() * 9, "{powers:?}");
    assert!(
        powers[0] > 5.0 && powers[powers.len() - 1] < 60.0,
        "{powers:?}"
    );
}

#[test]
fn the_wrap_guard_keeps_a_window_15_wrap_periods_long_exact() {
    // 20 W on a counter with a 1 J range: it wraps every 50 ms.
    let watts = 20.0;
    let src = || ClockSource::new(Reading::Energy, 999_999, |_| 20.0);
    let guarded = meter(src());
    let config = SamplerConfig {
        max_power_w: 2.0 * watts,
        ..SamplerConfig::default()
    };
    let s = Sampler::start(guarded.clone(), &config).unwrap();
    assert!(s.stats().period_ns <= 15_000_000);
    s.window_opened();
    let a = guarded.read().unwrap();
    std::thread::sleep(Duration::from_millis(750));
    let b = guarded.read().unwrap();
    s.window_closed();
    let w = guarded.window(&a, &b);
    let truth = watts * w.duration_ns as f64 * 1e-9;
    assert!(
        (w.joules[0] - truth).abs() < 1e-3,
        "{} J measured, {truth} J drawn",
        w.joules[0]
    );
    assert!(guarded.wraps()[0] >= 14);

    // Without the guard the same window loses every wrap but the last.
    let bare = meter(src());
    let a = bare.read().unwrap();
    std::thread::sleep(Duration::from_millis(750));
    let b = bare.read().unwrap();
    let w = bare.window(&a, &b);
    assert!(w.joules[0] < 1.0, "{} J", w.joules[0]);
}

#[test]
fn the_wrap_guard_reads_only_while_a_window_is_open() {
    let m = meter(ClockSource::new(Reading::Energy, 999_999, |_| 20.0));
    let config = SamplerConfig {
        max_power_w: 40.0,
        ..SamplerConfig::default()
    };
    let s = Sampler::start(m, &config).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.stats().samples, 0);
    s.window_opened();
    std::thread::sleep(Duration::from_millis(100));
    s.window_closed();
    let during = s.stats().samples;
    assert!(during >= 5, "{during} reads while a window was open");
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.stats().samples <= during + 1);
}

#[test]
fn nothing_to_do_means_no_thread() {
    // A counter that never wraps and no sampling: no heartbeat at all.
    let m = meter(ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0));
    assert!(Sampler::start(m, &SamplerConfig::default()).is_none());
}

#[test]
fn pause_and_resume_stop_and_restart_sampling() {
    let m = meter(ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0));
    let s = Sampler::start(m, &sampling(500.0, 100)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.pause();
    let at_pause = s.stats().samples;
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.stats().samples <= at_pause + 1);
    s.resume();
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.stats().samples > at_pause + 20);
}

#[test]
fn the_sampler_reads_a_slow_source_no_faster_than_it_refreshes_but_windows_always_do() {
    let mut src = ClockSource::new(Reading::Energy, u64::MAX, |_| 5.0);
    src.min_interval_ns = 50_000_000;
    let src = Arc::new(src);
    struct Shared(Arc<ClockSource>);
    impl Source for Shared {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn root(&self) -> &Path {
            self.0.root()
        }
        fn domains(&self) -> &[Domain] {
            self.0.domains()
        }
        fn read_raw(&self, out: &mut [u64]) -> Result<()> {
            self.0.read_raw(out)
        }
        fn min_read_interval_ns(&self) -> u64 {
            self.0.min_read_interval_ns()
        }
        fn problems(&self) -> &[Error] {
            &[]
        }
        fn notes(&self) -> &[String] {
            &[]
        }
    }
    let m = Arc::new(Meter::new(vec![Box::new(Shared(src.clone()))]).unwrap());
    let reads = || src.reads.load(std::sync::atomic::Ordering::Relaxed);
    let s = Sampler::start(m.clone(), &sampling(1000.0, 1000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (samples, sampled_reads) = (s.stats().samples, reads());
    assert!(samples > 200, "{samples}");
    assert!(
        sampled_reads <= 10,
        "{sampled_reads} reads for {samples} samples"
    );
    m.read().unwrap();
    m.read().unwrap();
    assert!(reads() >= sampled_reads + 2);
}
