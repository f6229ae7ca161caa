//! Readings no hardware can give are noted and bounded, never counted: a jump further than a
//! counter's maximum power can take it in the time its refresh allows, and, whatever the
//! readings, every value reported lies inside its own range.

use carbonfast_core::clock::monotonic_ns;
use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const MS: u64 = 1_000_000;
const RANGE_UJ: u64 = 262_143_328_850;

fn domain(name: &str, kind: DomainKind, max_raw: u64, reading: Reading) -> Domain {
    Domain {
        name: name.into(),
        kind,
        source: "fake",
        path: PathBuf::from("/fake"),
        units_per_joule: if reading == Reading::Energy { 1e6 } else { 1.0 },
        max_raw,
        reading,
        label: String::new(),
        update_period_ns: None,
        max_power_w: None,
        estimate: None,
    }
}

/// A package drawing 20 W, refreshed every millisecond of wall time, whose counter leaps by
/// 1000 J at once `jump_at_ns` after it starts.
struct Jumping {
    domains: Vec<Domain>,
    t0: u64,
    jump_at_ns: u64,
}

impl Source for Jumping {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        let t = monotonic_ns().saturating_sub(self.t0);
        let jump = if t >= self.jump_at_ns {
            1_000_000_000
        } else {
            0
        };
        out[0] = (t / MS * 20_000 + jump) % (RANGE_UJ + 1); // 20 mJ a millisecond
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
fn a_jump_past_what_the_learned_refresh_allows_is_noted_not_counted() {
    let source = Jumping {
        domains: vec![domain(
            "package-0",
            DomainKind::Package,
            RANGE_UJ,
            Reading::Energy,
        )],
        t0: monotonic_ns(),
        jump_at_ns: 600 * MS,
    };
    let mut meter = Meter::new(vec![Box::new(source)]).unwrap();
    // Long enough to learn the 1 ms refresh on a busy machine too.
    meter.learn_periods(20 * MS);
    assert!(
        meter.domains()[0].update_period_ns.is_some(),
        "the probe learned no refresh period"
    );
    let start = meter.read().unwrap();
    let mut end = start.clone();
    // Reads 20 ms apart: at 3 kW and two 1 ms refreshes, at most 66 J between two of them.
    while monotonic_ns() < start.t_ns + 1_000 * MS {
        std::thread::sleep(std::time::Duration::from_millis(20));
        meter.read_into(&mut end).unwrap();
    }
    let w = meter.window(&start, &end);
    let t = w.duration_ns as f64 * 1e-9;
    assert!(w.joules[0] < 3.0 * 20.0 * t, "{} J in {t} s", w.joules[0]);
    assert!(meter.anomalies()[0].0 >= 1, "{:?}", meter.anomalies());
    assert!(w.joules_low[0] <= w.joules[0] && w.joules[0] <= w.joules_high[0]);
}

/// Plays back arbitrary raw readings of one domain, one per read. `FAIL` is a read that
/// fails.
struct Playback {
    domains: Vec<Domain>,
    readings: Vec<u64>,
    next: AtomicUsize,
    last: Mutex<u64>,
    /// Polled in the background, as a slow source: its longer windows are refined too.
    slow: bool,
}

const FAIL: u64 = u64::MAX - 7;

impl Source for Playback {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        self.read_each(out, &mut |_, _| {})
    }
    fn read_each(&self, out: &mut [u64], failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let mut last = self.last.lock().unwrap();
        let r = self.readings.get(n).copied().unwrap_or(*last);
        if r == FAIL {
            let detail = "garbage".into();
            failed(
                0,
                Error::Malformed {
                    path: PathBuf::from("/fake"),
                    detail,
                },
            );
        } else {
            out[0] = r;
            *last = r;
        }
        Ok(())
    }
    fn slow(&self) -> bool {
        self.slow
    }
    fn problems(&self) -> &[Error] {
        &[]
    }
    fn notes(&self) -> &[String] {
        &[]
    }
}

/// One raw reading of a counter whose range is `max`: a step on, a wrap, a step back, a jump,
/// a value past the range, garbage, or the same again.
fn raw_step(max: u64) -> impl Strategy<Value = (u8, u64)> {
    (0u8..7, 0..=max.min(1 << 40))
}

fn apply(prev: u64, max: u64, (how, x): (u8, u64)) -> u64 {
    match how {
        0 => prev.saturating_add(x % 50_000).min(max), // a plausible step
        // a step that may wrap
        1 => ((u128::from(prev) + u128::from(x % (max / 2 + 1))) % (u128::from(max) + 1)) as u64,
        2 => prev.saturating_sub(x % 10_000),   // back a little
        3 => x.min(max),                        // anywhere: a jump, a reset
        4 => max.saturating_add(1 + x % 1_000), // past the range
        5 => FAIL,                              // a read that fails
        _ => prev,                              // the same again
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For any sequence of readings, every window's value per domain lies inside its range,
    /// and its total inside the total's range, whenever they are finite; refined windows too.
    #[test]
    fn every_value_lies_inside_its_range(
        polled in any::<bool>(),
        max in prop_oneof![Just(RANGE_UJ), 1_000u64..10_000_000, Just(u64::MAX)],
        start in 0u64..1_000_000,
        steps in proptest::collection::vec((raw_step(RANGE_UJ), 0u64..5_000_000_000u64), 1..40),
        pairs in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..10),
    ) {
        let mut energy = start.min(max);
        let mut readings = vec![[energy, 20_000]];
        for &(step, mw) in &steps {
            let raw = apply(energy, max, step);
            if raw != FAIL && raw <= max {
                energy = raw;
            }
            // Power: plausible, past what any domain draws, or a failed read.
            let power = match mw % 5 { 0 => mw, 1 => u64::MAX, 2 => FAIL, _ => mw % 500_000 };
            readings.push([raw, power]);
        }
        let mut package = domain("package-0", DomainKind::Package, max, Reading::Energy);
        // Refreshing every millisecond (as RAPL: windows shorter than that are interpolated)
        // or every microsecond, polled (longer windows are resolved against the refreshes).
        package.update_period_ns = Some(if polled { 1_000 } else { MS });
        let gpu = domain("gpu-0", DomainKind::Gpu, u64::MAX, Reading::PowerMilliwatts);
        let play = |d: Domain, col: usize, slow: bool| -> Box<dyn Source> {
            Box::new(Playback {
                domains: vec![d],
                readings: readings.iter().map(|r| r[col]).collect(),
                next: AtomicUsize::new(0),
                last: Mutex::new(0),
                slow,
            })
        };
        let meter = Meter::new(vec![play(package, 0, polled), play(gpu, 1, false)]).unwrap();
        let mut snaps = vec![meter.read().unwrap()];
        for _ in 1..readings.len() {
            snaps.push(meter.read().unwrap());
        }
        let inside = |v: f64, lo: f64, hi: f64| {
            let tol = 1e-9 * v.abs().max(1.0);
            !(v.is_finite() && lo.is_finite() && hi.is_finite()) || (lo - tol <= v && v <= hi + tol)
        };
        for (a, b) in pairs {
            let (i, j) = (a.index(snaps.len()), b.index(snaps.len()));
            let (i, j) = (i.min(j), i.max(j));
            let mut w = meter.window(&snaps[i], &snaps[j]);
            for refined in [false, true] {
                if refined {
                    meter.refine(&mut w, &|_, _| false);
                }
                for d in 0..w.joules.len() {
                    prop_assert!(
                        inside(w.joules[d], w.joules_low[d], w.joules_high[d]),
                        "domain {d}: {} not in [{}, {}] (refined: {refined})",
                        w.joules[d], w.joules_low[d], w.joules_high[d]
                    );
                }
                if let (Some(t), Some((lo, hi))) = (w.total_j, w.total_range_j) {
                    prop_assert!(inside(t, lo, hi), "total {t} not in [{lo}, {hi}]");
                }
            }
        }
    }
}
