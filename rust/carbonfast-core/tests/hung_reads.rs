//! A source whose read never returns (a hung driver) holds up no one but the thread caught in
//! it: every other read passes it over once it is past READ_DEADLINE_NS, and the other
//! sources' domains are kept, the hung one's unknown.

use carbonfast_core::meter::READ_DEADLINE_NS;
use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fake {
    name: &'static str,
    domains: Vec<Domain>,
    value: Arc<AtomicU64>,
    /// While set, a read blocks (as a read stuck in a driver would) until it is cleared.
    hang: Arc<AtomicBool>,
}

fn package(name: &str) -> Domain {
    Domain {
        name: name.into(),
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

impl Source for Fake {
    fn name(&self) -> &'static str {
        self.name
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        while self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        out[0] = self.value.load(Ordering::SeqCst);
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
fn a_hung_source_is_passed_over_after_the_deadline_and_the_other_kept() {
    let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hang = Arc::new(AtomicBool::new(false));
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(Fake {
            name: "steady",
            domains: vec![package("package-0")],
            value: a.clone(),
            hang: Arc::new(AtomicBool::new(false)),
        }),
        Box::new(Fake {
            name: "flaky",
            domains: vec![package("package-1")],
            value: b.clone(),
            hang: hang.clone(),
        }),
    ];
    let meter = Arc::new(Meter::new(sources).unwrap());
    let start = meter.read().unwrap();
    hang.store(true, Ordering::SeqCst);
    // Another thread (a sampler, a poller) is caught in the hung read.
    let caught = {
        let meter = meter.clone();
        std::thread::spawn(move || meter.read().map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(50));
    a.store(3_000_000, Ordering::SeqCst);
    b.store(5_000_000, Ordering::SeqCst);
    let t = Instant::now();
    let end = meter.read().unwrap();
    let waited = t.elapsed();
    assert!(waited < Duration::from_nanos(READ_DEADLINE_NS) + Duration::from_secs(1));
    let w = meter.window(&start, &end);
    assert_eq!(w.failed, vec![false, true]);
    assert_eq!(w.joules[0], 3.0);
    assert_eq!(w.total_j, Some(3.0));
    assert!(meter.failure(1).unwrap().contains("did not answer"));
    // Known to hang now: the next read does not wait for it at all.
    let t = Instant::now();
    meter.read().unwrap();
    assert!(t.elapsed() < Duration::from_millis(200));
    // Once the hung read returns, the source is read again; windows after it count it.
    hang.store(false, Ordering::SeqCst);
    caught.join().unwrap().unwrap();
    let again = meter.read().unwrap();
    b.store(6_000_000, Ordering::SeqCst);
    let later = meter.read().unwrap();
    let w = meter.window(&again, &later);
    assert_eq!(w.failed, vec![false, false]);
    assert_eq!(w.joules[1], 1.0);
}
