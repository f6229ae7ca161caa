//! The perf_event source on a fake power PMU tree, with counters opened by a fake opener.

use carbonfast_core::source::perf::{PerfCounter, PerfOpener, PerfSource};
use carbonfast_core::source::{Source, Unreadable};
use carbonfast_core::{DomainKind, Error, Meter, Reading};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// 2^-32 J: what the kernel writes into every RAPL event's .scale.
const SCALE: &str = "2.3283064365386962890625e-10";
const UNITS_PER_JOULE: f64 = 4_294_967_296.0;
const PMU_TYPE: u32 = 23;

struct FakePmu {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl FakePmu {
    fn new(cpumask: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bus/event_source/devices/power");
        fs::create_dir_all(root.join("events")).unwrap();
        fs::create_dir_all(root.join("format")).unwrap();
        fs::write(root.join("type"), format!("{PMU_TYPE}\n")).unwrap();
        fs::write(root.join("cpumask"), format!("{cpumask}\n")).unwrap();
        fs::write(root.join("format/event"), "config:0-7\n").unwrap();
        FakePmu { _dir: dir, root }
    }

    fn event(&self, name: &str, code: u8) -> &Self {
        let events = self.root.join("events");
        fs::write(events.join(name), format!("event=0x{code:02x}\n")).unwrap();
        fs::write(events.join(format!("{name}.scale")), format!("{SCALE}\n")).unwrap();
        fs::write(events.join(format!("{name}.unit")), "Joules\n").unwrap();
        self
    }

    fn write(&self, file: &str, content: &str) {
        fs::write(self.root.join(file), content).unwrap();
    }

    /// A two-socket server: pkg and ram on CPUs 0 and 36, psys too.
    fn server() -> Self {
        let pmu = FakePmu::new("0,36");
        pmu.event("energy-cores", 0x01)
            .event("energy-pkg", 0x02)
            .event("energy-ram", 0x03)
            .event("energy-psys", 0x05);
        pmu
    }
}

struct FakeCounter(Arc<AtomicU64>);

impl PerfCounter for FakeCounter {
    fn read_count(&self) -> io::Result<u64> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

/// Where a live counter stands when discovery reads it: it has ticked since it was opened.
const FIRST_TICK: u64 = 1_000;

/// Hands out one shared counter per (config, cpu) and remembers what was opened.
#[derive(Default)]
struct FakeOpener {
    counters: Mutex<HashMap<(u64, i32), Arc<AtomicU64>>>,
    opened: Mutex<Vec<(u32, u64, i32)>>,
    refuse: Option<io::ErrorKind>,
    /// Events whose count stays at 0, as under a hypervisor that shows the PMU only.
    still: Vec<(u64, i32)>,
}

impl FakeOpener {
    fn refusing(kind: io::ErrorKind) -> Self {
        FakeOpener {
            refuse: Some(kind),
            ..Default::default()
        }
    }

    fn counter(&self, config: u64, cpu: i32) -> Arc<AtomicU64> {
        self.counters
            .lock()
            .unwrap()
            .entry((config, cpu))
            .or_insert_with(|| {
                let start = if self.still.contains(&(config, cpu)) {
                    0
                } else {
                    FIRST_TICK
                };
                Arc::new(AtomicU64::new(start))
            })
            .clone()
    }

    fn advance(&self, config: u64, cpu: i32, by: u64) {
        self.counter(config, cpu).fetch_add(by, Ordering::SeqCst);
    }
}

impl PerfOpener for FakeOpener {
    fn open(&self, pmu_type: u32, config: u64, cpu: i32) -> io::Result<Box<dyn PerfCounter>> {
        self.opened.lock().unwrap().push((pmu_type, config, cpu));
        if let Some(kind) = self.refuse {
            return Err(io::Error::from(kind));
        }
        Ok(Box::new(FakeCounter(self.counter(config, cpu))))
    }
}

fn names(src: &PerfSource) -> Vec<(String, DomainKind)> {
    src.domains()
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect()
}

#[test]
fn two_packages_from_the_cpumask_with_their_events() {
    let pmu = FakePmu::server();
    let opener = FakeOpener::default();
    let src = PerfSource::discover_with(&pmu.root, &opener);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert!(src.notes().is_empty(), "{:?}", src.notes());
    assert_eq!(src.name(), "perf");
    assert_eq!(src.root(), pmu.root.as_path());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
            ("dram-0".into(), DomainKind::Dram),
            ("psys".into(), DomainKind::Psys),
            ("package-1".into(), DomainKind::Package),
            ("core-1".into(), DomainKind::Core),
            ("dram-1".into(), DomainKind::Dram),
        ]
    );
    // Each event on each package's CPU, with the PMU type and the event code as config;
    // psys once.
    assert_eq!(
        *opener.opened.lock().unwrap(),
        vec![
            (PMU_TYPE, 0x02, 0),
            (PMU_TYPE, 0x01, 0),
            (PMU_TYPE, 0x03, 0),
            (PMU_TYPE, 0x05, 0),
            (PMU_TYPE, 0x02, 36),
            (PMU_TYPE, 0x01, 36),
            (PMU_TYPE, 0x03, 36),
        ]
    );
    for d in src.domains() {
        assert_eq!(d.units_per_joule, UNITS_PER_JOULE, "{}", d.name);
        assert_eq!(d.max_raw, u64::MAX);
        assert_eq!(d.reading, Reading::Energy);
        assert_eq!(d.source, "perf");
    }
    assert!(src.domains()[0].path.ends_with("events/energy-pkg"));
    assert!(src.domains()[6].path.ends_with("events/energy-ram"));

    opener.advance(0x02, 36, 7);
    opener.advance(0x05, 0, 9);
    let mut raw = vec![0; 7];
    src.read_raw(&mut raw).unwrap();
    let t = FIRST_TICK;
    assert_eq!(raw, vec![t, t, t, t + 9, t + 7, t, t]);
}

#[test]
fn cpumask_ranges_and_the_gpu_event() {
    let pmu = FakePmu::new("0-1");
    pmu.event("energy-pkg", 0x02).event("energy-gpu", 0x04);
    let opener = FakeOpener::default();
    let src = PerfSource::discover_with(&pmu.root, &opener);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("uncore-0".into(), DomainKind::Uncore),
            ("package-1".into(), DomainKind::Package),
            ("uncore-1".into(), DomainKind::Uncore),
        ]
    );
    let cpus: Vec<i32> = opener.opened.lock().unwrap().iter().map(|o| o.2).collect();
    assert_eq!(cpus, vec![0, 0, 1, 1]);
}

#[test]
fn energy_through_the_meter_is_exact() {
    let pmu = FakePmu::server();
    let opener = FakeOpener::default();
    opener.advance(0x02, 0, 123_456_789);
    let src = PerfSource::discover_with(&pmu.root, &opener);
    let names: Vec<_> = src.domains().iter().map(|d| d.name.clone()).collect();
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let start = meter.read().unwrap();
    // 3.5 J on package 0, 0.25 J on package 1, 2 J of DRAM on package 1, 10 J of psys
    // (which the total leaves out: it covers the packages).
    opener.advance(0x02, 0, 7 << 31);
    opener.advance(0x02, 36, 1 << 30);
    opener.advance(0x03, 36, 2 << 32);
    opener.advance(0x05, 0, 10 << 32);
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    let j = |name: &str| w.joules[names.iter().position(|n| n == name).unwrap()];
    assert_eq!(j("package-0"), 3.5);
    assert_eq!(j("package-1"), 0.25);
    assert_eq!(j("dram-1"), 2.0);
    assert_eq!(j("dram-0"), 0.0);
    assert_eq!(j("psys"), 10.0);
    assert_eq!(w.total_j, Some(5.75));
}

#[test]
fn an_event_that_never_counts_is_a_problem_not_a_silent_zero() {
    // What a VM showed: the PMU lists energy-psys and opens it, and the count stays at 0.
    let pmu = FakePmu::new("0");
    pmu.event("energy-pkg", 0x02).event("energy-psys", 0x05);
    let opener = FakeOpener {
        still: vec![(0x05, 0)],
        ..Default::default()
    };
    let src = PerfSource::discover_with(&pmu.root, &opener);
    assert_eq!(names(&src), vec![("package-0".into(), DomainKind::Package)]);
    match src.problems() {
        [Error::Missing { path, why, .. }] => {
            assert!(path.ends_with("events/energy-psys"));
            assert!(
                why.starts_with("psys:") && why.contains("stayed at 0"),
                "{why}"
            );
        }
        other => panic!("expected one Missing problem, got {other:?}"),
    }
    let mut raw = vec![0; 1];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![FIRST_TICK]);
}

#[test]
fn a_second_package_that_never_counts_is_unreadable_so_it_can_be_estimated() {
    let pmu = FakePmu::server();
    let opener = FakeOpener {
        still: vec![(0x02, 36), (0x03, 36)],
        ..Default::default()
    };
    let src = PerfSource::discover_with(&pmu.root, &opener);
    let unread = |name: &str, kind| Unreadable {
        name: name.into(),
        kind,
    };
    assert_eq!(
        src.unreadable(),
        [
            unread("package-1", DomainKind::Package),
            unread("dram-1", DomainKind::Dram)
        ]
    );
    assert!(names(&src).contains(&("package-0".into(), DomainKind::Package)));
}

#[test]
fn a_missing_pmu_is_missing_with_the_kernel_versions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("power");
    let src = PerfSource::discover_with(&root, &FakeOpener::default());
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { path, fix, .. }] => {
            assert_eq!(path, &root);
            assert!(fix.contains("3.14") && fix.contains("5.8"), "{fix}");
        }
        other => panic!("expected one Missing problem, got {other:?}"),
    }
}

#[test]
fn permission_denied_is_reported_once_with_sysctl_and_no_capability() {
    let pmu = FakePmu::server();
    let opener = FakeOpener::refusing(io::ErrorKind::PermissionDenied);
    let src = PerfSource::discover_with(&pmu.root, &opener);
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::PermissionDenied { path, fix }] => {
            assert!(path.ends_with("events/energy-pkg"));
            assert!(
                fix.contains("sudo sysctl kernel.perf_event_paranoid=0"),
                "{fix}"
            );
            assert!(!fix.contains("setcap"), "{fix}");
        }
        other => panic!("expected one PermissionDenied problem, got {other:?}"),
    }
    // Permission is per process: no point trying every event.
    assert_eq!(opener.opened.lock().unwrap().len(), 1);
}

#[test]
fn other_open_failures_disable_only_their_domain() {
    let pmu = FakePmu::server();
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::refusing(io::ErrorKind::Other));
    assert!(src.domains().is_empty());
    assert_eq!(src.problems().len(), 7);
    assert!(src.problems().iter().all(|p| p.kind() == "io"));
}

#[test]
fn malformed_event_files_disable_only_their_event() {
    let pmu = FakePmu::server();
    pmu.write("events/energy-cores", "event=0x01,umask=0x2\n");
    pmu.write("events/energy-ram.scale", "lots\n");
    pmu.write("events/energy-psys.unit", "Watts\n");
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::default());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("package-1".into(), DomainKind::Package),
        ]
    );
    let problems: Vec<_> = src
        .problems()
        .iter()
        .map(|p| (p.kind(), p.path().file_name().unwrap().to_owned()))
        .collect();
    assert_eq!(
        problems,
        vec![
            ("malformed", "energy-cores".into()),
            ("malformed", "energy-ram.scale".into()),
            ("malformed", "energy-psys.unit".into()),
        ]
    );
}

#[test]
fn a_pmu_without_energy_events_says_so() {
    let pmu = FakePmu::new("0");
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::default());
    assert!(src.domains().is_empty());
    assert!(
        matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("no energy event"))
    );
}

#[test]
fn a_malformed_type_or_cpumask_is_a_problem() {
    let pmu = FakePmu::server();
    pmu.write("cpumask", "zero\n");
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::default());
    assert!(src.domains().is_empty());
    assert!(matches!(src.problems(), [Error::Malformed { path, .. }] if path.ends_with("cpumask")));

    pmu.write("type", "power\n");
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::default());
    assert!(matches!(src.problems(), [Error::Malformed { path, .. }] if path.ends_with("type")));
}

#[test]
fn a_scale_that_is_not_a_power_of_two_is_noted() {
    let pmu = FakePmu::new("0");
    pmu.event("energy-pkg", 0x02);
    pmu.write("events/energy-pkg.scale", "1e-6\n");
    let src = PerfSource::discover_with(&pmu.root, &FakeOpener::default());
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(src.domains()[0].units_per_joule, 1e6);
    assert!(src.notes().iter().any(|n| n.contains("not a power of two")));
}

/// On real hardware (run with --ignored, with the right to open system-wide perf events): the
/// syscall path opens every event, and the counts give plausible package power under load and
/// agree with powercap where it exists.
#[test]
#[ignore = "needs the RAPL perf PMU and CAP_PERFMON or perf_event_paranoid <= 0"]
fn real_power_pmu_agrees_with_powercap() {
    use carbonfast_core::source::{perf, powercap};
    let src = PerfSource::discover(std::path::Path::new(perf::DEFAULT_ROOT));
    eprintln!("perf domains: {:#?}", src.domains());
    eprintln!(
        "perf problems: {:#?}\nperf notes: {:#?}",
        src.problems(),
        src.notes()
    );
    assert!(src.problems().is_empty());
    assert!(!src.domains().is_empty());
    let reference =
        powercap::PowercapSource::discover(std::path::Path::new(powercap::DEFAULT_ROOT));
    let sources: Vec<Box<dyn Source>> = vec![Box::new(src), Box::new(reference)];
    let meter = Meter::new(sources).unwrap();
    let start = meter.read().unwrap();
    let t = std::time::Instant::now();
    let mut x = 0u64;
    while t.elapsed() < std::time::Duration::from_millis(500) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    let seconds = w.duration_ns as f64 * 1e-9;
    let domains = meter.domains();
    for (d, j) in domains.iter().zip(&w.joules) {
        eprintln!(
            "{:>9} {:<10} {:>10.4} J {:>8.2} W",
            d.source,
            d.name,
            j,
            j / seconds
        );
    }
    for (d, &j) in domains.iter().zip(&w.joules) {
        if d.source != "perf" {
            continue;
        }
        if d.kind == DomainKind::Package {
            assert!(
                j / seconds > 0.5 && j / seconds < 1000.0,
                "{}: {j} J",
                d.name
            );
        }
        if let Some(k) = domains
            .iter()
            .position(|r| r.source == "powercap" && r.name == d.name)
        {
            let r = w.joules[k];
            assert!(
                (j - r).abs() <= 0.02 * r.max(j) + 0.05,
                "{}: perf {j} J, powercap {r} J",
                d.name
            );
        }
    }
}
