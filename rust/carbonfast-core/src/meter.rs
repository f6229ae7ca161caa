//! The Meter: owns the sources, feeds every reading through one wrap-aware Counter per domain,
//! and hands out Snapshots of cumulative energy.

use crate::clock::monotonic_ns;
use crate::counter::Counter;
use crate::domain::{Domain, DomainKind};
use crate::error::{Error, Result};
use crate::source::powercap::{self, PowercapSource};
use crate::source::Source;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Cumulative energy of every domain since the meter started, at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC nanoseconds, the midpoint of the reads.
    pub t_ns: u64,
    /// Per domain, in the domain's raw unit, wraps unfolded.
    pub totals: Vec<u64>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub duration_ns: u64,
    /// Per domain, in joules.
    pub joules: Vec<f64>,
    /// The total as carbonfast defines it: packages + DRAM + GPUs; psys alone where no
    /// package is readable; None when nothing is.
    pub total_j: Option<f64>,
}

struct State {
    counters: Vec<Counter>,
    raw: Vec<u64>,
}

pub struct Meter {
    sources: Vec<Box<dyn Source>>,
    domains: Vec<Domain>,
    /// Reading and counting happen under one lock: a reading applied out of order would look
    /// like a wrap.
    state: Mutex<State>,
}

impl Meter {
    /// A meter over the given sources. Takes the first reading, which every later snapshot is
    /// relative to.
    pub fn new(sources: Vec<Box<dyn Source>>) -> Result<Self> {
        let domains: Vec<Domain> = sources
            .iter()
            .flat_map(|s| s.domains().iter().cloned())
            .collect();
        let state = State {
            counters: domains.iter().map(|d| Counter::new(d.max_raw)).collect(),
            raw: vec![0; domains.len()],
        };
        let meter = Meter {
            sources,
            domains,
            state: Mutex::new(state),
        };
        meter.read()?;
        Ok(meter)
    }

    /// A meter over every source found on this machine; `powercap_root` overrides the powercap
    /// root (else CARBONFAST_POWERCAP_ROOT, else /sys/class/powercap).
    pub fn discover(powercap_root: Option<&Path>) -> Result<Self> {
        let root = powercap::resolve_root(powercap_root);
        Meter::new(vec![Box::new(PowercapSource::discover(&root))])
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    pub fn sources(&self) -> &[Box<dyn Source>] {
        &self.sources
    }

    /// Every problem of every source.
    pub fn problems(&self) -> impl Iterator<Item = (&dyn Source, &Error)> {
        self.sources
            .iter()
            .flat_map(|s| s.problems().iter().map(move |p| (s.as_ref(), p)))
    }

    /// A fresh snapshot.
    pub fn read(&self) -> Result<Snapshot> {
        let mut snap = Snapshot {
            t_ns: 0,
            totals: vec![0; self.domains.len()],
        };
        self.read_into(&mut snap)?;
        Ok(snap)
    }

    /// Reads every source into an existing snapshot; allocates nothing.
    pub fn read_into(&self, snap: &mut Snapshot) -> Result<()> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let t0 = monotonic_ns();
        let mut offset = 0;
        for source in &self.sources {
            let n = source.domains().len();
            source.read_raw(&mut state.raw[offset..offset + n])?;
            offset += n;
        }
        let t1 = monotonic_ns();
        snap.t_ns = t0 + (t1 - t0) / 2;
        snap.totals.resize(state.counters.len(), 0);
        for ((total, counter), &raw) in snap
            .totals
            .iter_mut()
            .zip(state.counters.iter_mut())
            .zip(state.raw.iter())
        {
            *total = counter.update(raw);
        }
        Ok(())
    }

    /// Energy per domain between two snapshots of this meter, and the total.
    pub fn window(&self, start: &Snapshot, end: &Snapshot) -> Window {
        let joules: Vec<f64> = self
            .domains
            .iter()
            .zip(start.totals.iter().zip(&end.totals))
            .map(|(d, (&a, &b))| b.wrapping_sub(a) as f64 / d.units_per_joule)
            .collect();
        Window {
            duration_ns: end.t_ns.saturating_sub(start.t_ns),
            total_j: total_of(&self.domains, &joules),
            joules,
        }
    }

    /// How many times each domain's counter has wrapped.
    pub fn wraps(&self) -> Vec<u64> {
        self.lock().counters.iter().map(Counter::wraps).collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the counters consistent (update is one
        // assignment), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sums the domains that count in the total; falls back to psys where no package is readable.
pub fn total_of(domains: &[Domain], joules: &[f64]) -> Option<f64> {
    let sum_where = |pred: &dyn Fn(&Domain) -> bool| {
        let mut any = false;
        let mut sum = 0.0;
        for (d, &j) in domains.iter().zip(joules) {
            if pred(d) {
                any = true;
                sum += j;
            }
        }
        any.then_some(sum)
    };
    if domains.iter().any(|d| d.kind == DomainKind::Package) {
        sum_where(&|d| d.counts_in_total())
    } else {
        sum_where(&|d| d.kind == DomainKind::Psys).or_else(|| sum_where(&|d| d.counts_in_total()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn domain(name: &str, kind: DomainKind) -> Domain {
        Domain {
            name: name.into(),
            kind,
            source: "test",
            path: PathBuf::from(name),
            units_per_joule: 1.0,
            max_raw: 100,
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
        assert_eq!(total_of(&ds, &[10.0, 6.0, 2.0, 3.0, 50.0]), Some(13.0));
    }

    #[test]
    fn total_is_psys_when_no_package_is_readable() {
        let ds = [
            domain("psys", DomainKind::Psys),
            domain("dram-0", DomainKind::Dram),
        ];
        assert_eq!(total_of(&ds, &[40.0, 3.0]), Some(40.0));
    }

    #[test]
    fn total_of_nothing_is_none_not_zero() {
        assert_eq!(total_of(&[], &[]), None);
        let ds = [domain("core-0", DomainKind::Core)];
        assert_eq!(total_of(&ds, &[1.0]), None);
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
