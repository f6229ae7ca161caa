//! Windows shorter than a counter's refresh, on a counter with RAPL's habits whose truth is
//! known: it draws a fixed power and shows the energy as of its latest refresh, every
//! millisecond.

use carbonfast_core::clock::monotonic_ns;
use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result, Snapshot};
use std::path::{Path, PathBuf};

const WATTS: f64 = 50.0;
const PERIOD_NS: u64 = 1_000_000;

struct SteppedSource {
    domains: Vec<Domain>,
    t0: u64,
}

impl SteppedSource {
    fn new() -> Self {
        SteppedSource {
            domains: vec![Domain {
                name: "package-0".into(),
                kind: DomainKind::Package,
                source: "stepped",
                path: PathBuf::from("/fake"),
                units_per_joule: 1e6,
                max_raw: u64::MAX,
                reading: Reading::Energy,
                label: String::new(),
                update_period_ns: None,
                max_power_w: None,
                estimate: None,
            }],
            t0: monotonic_ns(),
        }
    }

    /// The true energy since start, in joules.
    fn truth(t0: u64, t_ns: u64) -> f64 {
        WATTS * t_ns.saturating_sub(t0) as f64 * 1e-9
    }
}

impl Source for SteppedSource {
    fn name(&self) -> &'static str {
        "stepped"
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        let now = monotonic_ns();
        let refreshed = self.t0 + (now - self.t0) / PERIOD_NS * PERIOD_NS;
        out[0] = (Self::truth(self.t0, refreshed) * 1e6) as u64;
        Ok(())
    }
    fn problems(&self) -> &[Error] {
        &[]
    }
    fn notes(&self) -> &[String] {
        &[]
    }
}

fn spin(ns: u64) {
    let end = monotonic_ns() + ns;
    while monotonic_ns() < end {}
}

#[test]
fn the_refresh_period_is_learned_at_start() {
    let mut meter = Meter::new(vec![Box::new(SteppedSource::new())]).unwrap();
    meter.learn_periods(5 * PERIOD_NS);
    let p = meter.domains()[0].update_period_ns.expect("a period");
    assert!((900_000..1_100_000).contains(&p), "{p} ns");
}

#[test]
fn windows_of_100_us_get_a_value_and_a_range_that_holds_the_truth() {
    let src = SteppedSource::new();
    let t0 = src.t0;
    let mut meter = Meter::new(vec![Box::new(src)]).unwrap();
    meter.learn_periods(5 * PERIOD_NS);
    let windows: Vec<_> = (0..300)
        .map(|_| {
            let a = meter.read().unwrap();
            spin(100_000);
            (a, meter.read().unwrap())
        })
        .collect();
    let (mut covered, mut errors) = (0, Vec::new());
    for (a, b) in &windows {
        let mut w = meter.window(a, b);
        meter.refine_inline(&mut w);
        if w.duration_ns >= PERIOD_NS {
            continue; // the thread was descheduled mid-window: a counter difference, as it should
        }
        let truth = SteppedSource::truth(t0, b.t_ns) - SteppedSource::truth(t0, a.t_ns);
        assert!(w.interpolated[0], "{w:?}");
        let (lo, hi) = (w.joules_low[0], w.joules_high[0]);
        assert!(
            w.joules[0] > 0.0 && hi > lo,
            "a bare 0 J or no range: {w:?}"
        );
        // The counter's unit is 1 uJ; a refresh's value is floored.
        if lo - 2e-6 <= truth && truth <= hi + 2e-6 {
            covered += 1;
        }
        errors.push(w.joules[0] / truth - 1.0);
    }
    let n = errors.len() as f64;
    assert!(n >= 100.0, "only {n} windows stayed short");
    let mean = errors.iter().sum::<f64>() / n;
    let rms = (errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt();
    assert!(
        covered as f64 >= 0.9 * n,
        "{covered} of {n} ranges hold the truth"
    );
    assert!(mean.abs() <= 0.10, "mean error {mean}");
    assert!(rms <= 0.30, "RMS error {rms}");
}

#[test]
fn windows_longer_than_a_refresh_stay_counter_differences() {
    let src = SteppedSource::new();
    let mut meter = Meter::new(vec![Box::new(src)]).unwrap();
    meter.learn_periods(5 * PERIOD_NS);
    let a = meter.read().unwrap();
    spin(5 * PERIOD_NS);
    let b = meter.read().unwrap();
    let plain = meter.window(&a, &b);
    let mut w = plain.clone();
    meter.refine_inline(&mut w);
    assert_eq!(w, plain);
}

#[test]
fn a_benchmark_sample_between_two_refreshes_gets_their_energy() {
    let src = SteppedSource::new();
    let t0 = src.t0;
    let mut meter = Meter::new(vec![Box::new(src)]).unwrap();
    meter.learn_periods(5 * PERIOD_NS);
    let (pacing, period) = meter.pacing_domain().expect("RAPL paces the benchmark");
    assert_eq!(pacing, 0);
    assert!((900_000..1_100_000).contains(&period.nominal_ns));
    let mut snap = Snapshot::default();
    let mut count = meter.bench_poll(&mut snap, pacing, None).unwrap().count;
    let mut edges = Vec::new();
    while edges.len() < 26 {
        spin(PERIOD_NS / 4);
        let p = meter.bench_poll(&mut snap, pacing, Some(count)).unwrap();
        count = p.count;
        edges.extend(
            p.steps
                .into_iter()
                .filter(|&(_, width)| width <= PERIOD_NS / 2),
        );
    }
    let ((t1, w1), (t2, w2)) = (edges[0], edges[25]);
    let joules = meter
        .logged_energy(t1, t2, &|s, t| {
            meter.poll_until_step(s, t, &mut Snapshot::default())
        })
        .unwrap();
    // Each edge is a refresh, known to within the reads around it; the energy between two
    // refreshes is the counter's own difference, exactly.
    let refresh = |mid: u64| t0 + ((mid - t0) as f64 / PERIOD_NS as f64).round() as u64 * PERIOD_NS;
    let (r1, r2) = (refresh(t1), refresh(t2));
    assert!(r1.abs_diff(t1) <= w1 / 2 + 1_000 && r2.abs_diff(t2) <= w2 / 2 + 1_000);
    let truth = SteppedSource::truth(t0, r2) - SteppedSource::truth(t0, r1);
    assert!((joules - truth).abs() <= 2e-6, "{joules} J vs {truth} J");
}
