//! A counter in the total that stands still at start-up, while another of its source steps as
//! RAPL does, reads nothing: no window counts it as a measured 0 J, however short, until it
//! moves.

use carbonfast_core::clock::monotonic_ns;
use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PERIOD_NS: u64 = 1_000_000;

/// package-0 steps 50 mJ every millisecond of wall time; package-1 holds what the test sets.
struct TwoPackages {
    domains: Vec<Domain>,
    t0: u64,
    package_1: Arc<AtomicU64>,
}

fn package(n: u32) -> Domain {
    Domain {
        name: format!("package-{n}"),
        kind: DomainKind::Package,
        source: "fake",
        path: PathBuf::from("/fake"),
        units_per_joule: 1e6,
        max_raw: u64::MAX,
        reading: Reading::Energy,
        label: String::new(),
        update_period_ns: None,
        max_power_w: None,
        estimate: None,
    }
}

impl Source for TwoPackages {
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
        out[0] = monotonic_ns().saturating_sub(self.t0) / PERIOD_NS * 50_000;
        out[1] = self.package_1.load(Ordering::SeqCst);
        Ok(())
    }
    fn problems(&self) -> &[Error] {
        &[]
    }
    fn notes(&self) -> &[String] {
        &[]
    }
}

fn meter() -> (Meter, Arc<AtomicU64>) {
    let package_1 = Arc::new(AtomicU64::new(7_000));
    let source = TwoPackages {
        domains: vec![package(0), package(1)],
        t0: monotonic_ns(),
        package_1: package_1.clone(),
    };
    let mut meter = Meter::new(vec![Box::new(source)]).unwrap();
    meter.learn_periods(4 * PERIOD_NS);
    (meter, package_1)
}

#[test]
fn a_counter_still_beside_a_stepping_one_is_left_out_of_a_short_window() {
    let (meter, _) = meter();
    let a = meter.read().unwrap();
    let b = meter.read().unwrap();
    let w = meter.window(&a, &b);
    assert_eq!(w.stalled, vec![false, true]);
    assert_eq!(w.total_j, Some(w.joules[0]));
}

#[test]
fn once_it_moves_it_is_counted_again() {
    let (meter, package_1) = meter();
    package_1.fetch_add(3_000, Ordering::SeqCst);
    let a = meter.read().unwrap();
    package_1.fetch_add(2_000, Ordering::SeqCst);
    let b = meter.read().unwrap();
    let w = meter.window(&a, &b);
    assert_eq!(w.stalled, vec![false, false]);
    assert!((w.joules[1] - 0.002).abs() < 1e-12, "{:?}", w.joules);
    assert_eq!(w.total_j, Some(w.joules[0] + w.joules[1]));
}

#[test]
fn with_nothing_stepping_nothing_is_judged() {
    // A probe that saw no counter move learns nothing: a still fake tree, or a machine
    // asleep, is not proof that one counter is broken.
    let package_1 = Arc::new(AtomicU64::new(7_000));
    let source = TwoPackages {
        domains: vec![package(0), package(1)],
        t0: u64::MAX, // package-0 reads 0 throughout
        package_1,
    };
    let mut meter = Meter::new(vec![Box::new(source)]).unwrap();
    meter.learn_periods(4 * PERIOD_NS);
    let a = meter.read().unwrap();
    let w = meter.window(&a, &meter.read().unwrap());
    assert_eq!(w.stalled, vec![false, false]);
}

#[test]
fn with_every_counter_frozen_past_its_refreshes_none_reads_zero() {
    // An emulated RAPL returning constants, a static copy of sysfs: a RAPL counter refreshes
    // about every millisecond and an idle package draws watts, so hundreds of refreshes
    // without a step are no measured 0 J.
    let source = TwoPackages {
        domains: vec![package(0), package(1)],
        t0: u64::MAX, // package-0 reads 0 throughout
        package_1: Arc::new(AtomicU64::new(7_000)),
    };
    let mut meter = Meter::new(vec![Box::new(source)]).unwrap();
    meter.learn_periods(4 * PERIOD_NS);
    let a = meter.read().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let w = meter.window(&a, &meter.read().unwrap());
    assert_eq!(w.stalled, vec![true, true]);
    assert_eq!(w.total_j, None);
}
