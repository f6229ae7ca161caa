mod common;

use carbonfast_core::source::powercap::PowercapSource;
use carbonfast_core::source::Source;
use carbonfast_core::{DiscoverConfig, DomainKind, Error, Meter, RaplPath, RaplRoots};
use common::FakePowercap;

const RANGE: u64 = 262_143_328_850;

fn measured_only(root: &std::path::Path) -> DiscoverConfig {
    DiscoverConfig {
        rapl: RaplPath::Powercap,
        roots: RaplRoots {
            powercap: Some(root.to_path_buf()),
            ..RaplRoots::default()
        },
        estimate: None,
        ..DiscoverConfig::default()
    }
}

fn names(src: &PowercapSource) -> Vec<(String, DomainKind)> {
    src.domains()
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect()
}

fn two_socket_server() -> FakePowercap {
    let f = FakePowercap::new();
    f.zone("intel-rapl:0", "package-0", 1_000, RANGE);
    f.zone("intel-rapl:0:0", "core", 2_000, RANGE);
    f.zone("intel-rapl:0:1", "dram", 3_000, RANGE);
    f.zone("intel-rapl:1", "package-1", 4_000, RANGE);
    f.zone("intel-rapl:1:0", "dram", 5_000, RANGE);
    f
}

#[test]
fn discovers_packages_and_subzones_named_after_their_package() {
    let f = two_socket_server();
    let src = PowercapSource::discover(&f.root);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
            ("dram-0".into(), DomainKind::Dram),
            ("package-1".into(), DomainKind::Package),
            ("dram-1".into(), DomainKind::Dram),
        ]
    );
    let mut raw = vec![0; 5];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![1_000, 2_000, 3_000, 4_000, 5_000]);
    assert_eq!(src.domains()[0].max_raw, RANGE);
    assert!(src.domains()[0].path.ends_with("intel-rapl:0/energy_uj"));
}

#[test]
fn subzones_take_the_package_number_from_the_parent_name() {
    // Zone numbers need not match package numbers (psys sits between packages on laptops).
    let f = FakePowercap::new();
    f.zone("intel-rapl:0", "package-0", 1, RANGE);
    f.zone("intel-rapl:1", "psys", 1, RANGE);
    f.zone("intel-rapl:2", "package-1", 1, RANGE);
    f.zone("intel-rapl:2:0", "uncore", 1, RANGE);
    let src = PowercapSource::discover(&f.root);
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("psys".into(), DomainKind::Psys),
            ("package-1".into(), DomainKind::Package),
            ("uncore-1".into(), DomainKind::Uncore),
        ]
    );
}

#[test]
fn an_mmio_copy_of_a_package_is_counted_once() {
    let f = FakePowercap::new();
    f.zone("intel-rapl:0", "package-0", 10, RANGE);
    f.zone("intel-rapl-mmio:0", "package-0", 10, RANGE);
    let src = PowercapSource::discover(&f.root);
    assert_eq!(names(&src), vec![("package-0".into(), DomainKind::Package)]);
    assert!(src.domains()[0]
        .path
        .to_str()
        .unwrap()
        .contains("intel-rapl:0"));
    assert!(src.notes().iter().any(|n| n.contains("counted once")));
}

#[test]
fn an_mmio_zone_alone_is_used() {
    let f = FakePowercap::new();
    f.zone("intel-rapl-mmio:0", "package-0", 10, RANGE);
    let src = PowercapSource::discover(&f.root);
    assert_eq!(names(&src), vec![("package-0".into(), DomainKind::Package)]);
}

#[test]
fn a_missing_root_is_a_problem_with_a_fix_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nope");
    let src = PowercapSource::discover(&root);
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { path, fix, .. }] => {
            assert_eq!(path, &root);
            assert!(fix.contains("modprobe intel_rapl_msr"));
        }
        other => panic!("expected one Missing problem, got {other:?}"),
    }
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let a = meter.read().unwrap();
    let b = meter.read().unwrap();
    assert_eq!(meter.window(&a, &b).total_j, None);
}

#[test]
fn a_root_without_zones_says_so() {
    let f = FakePowercap::new();
    let src = PowercapSource::discover(&f.root);
    assert!(src.domains().is_empty());
    assert!(
        matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("no RAPL zones"))
    );
}

#[test]
fn malformed_files_disable_only_their_zone() {
    let f = two_socket_server();
    f.write("intel-rapl:0:0", "energy_uj", "garbage\n");
    f.write("intel-rapl:1:0", "max_energy_range_uj", "-1\n");
    f.write("intel-rapl:0:1", "energy_uj", &format!("{}\n", RANGE + 1));
    let src = PowercapSource::discover(&f.root);
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
        .map(|p| (p.kind(), p.path().to_owned()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().all(|(k, _)| *k == "malformed"));
    assert!(problems[0].1.ends_with("intel-rapl:0:0/energy_uj"));
    assert!(problems[2]
        .1
        .ends_with("intel-rapl:1:0/max_energy_range_uj"));
}

#[test]
fn a_missing_energy_file_is_reported() {
    let f = FakePowercap::new();
    let dir = f.zone("intel-rapl:0", "package-0", 1, RANGE);
    std::fs::remove_file(dir.join("energy_uj")).unwrap();
    let src = PowercapSource::discover(&f.root);
    assert!(src.domains().is_empty());
    assert!(matches!(src.problems(), [Error::Missing { path, .. }] if path.ends_with("energy_uj")));
}

#[test]
fn a_window_is_the_exact_counter_difference_across_a_wrap() {
    let f = FakePowercap::new();
    let max = 999_999;
    f.zone("intel-rapl:0", "package-0", 900_000, max);
    f.zone("intel-rapl:0:0", "dram", 10, max);
    let meter = Meter::discover(&measured_only(&f.root)).unwrap();
    let start = meter.read().unwrap();
    f.set("intel-rapl:0", 999_000);
    f.set("intel-rapl:0:0", 20);
    meter.read().unwrap();
    f.set("intel-rapl:0", 150_000); // wrapped: 1_000 to the top, then 150_000
    f.set("intel-rapl:0:0", 30);
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!(w.joules, vec![250_000e-6, 20e-6]);
    assert_eq!(w.total_j, Some(250_020e-6));
    assert_eq!(meter.wraps(), vec![1, 0]);
    assert!(end.t_ns > start.t_ns);
}

#[test]
fn a_counter_that_turns_malformed_after_discovery_is_unknown_with_its_path() {
    let f = FakePowercap::new();
    f.zone("intel-rapl:0", "package-0", 5, RANGE);
    f.zone("intel-rapl:1", "package-1", 5, RANGE);
    let meter = Meter::discover(&measured_only(&f.root)).unwrap();
    let start = meter.read().unwrap();
    f.write("intel-rapl:0", "energy_uj", "oops\n");
    f.write("intel-rapl:1", "energy_uj", "1000005\n");
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    // The other package is kept: one failed zone never costs the others.
    assert_eq!(w.failed, vec![true, false]);
    assert_eq!(w.total_j, Some(1.0));
    let why = meter.failure(0).expect("a reason");
    assert!(
        why.contains("intel-rapl:0/energy_uj") && why.contains("malformed"),
        "{why}"
    );
}

#[test]
fn endless_or_blocking_files_are_refused_not_read() {
    let f = two_socket_server();
    // A name that never ends, a range that never ends, a counter that would block forever.
    let zone0 = f.root.join("intel-rapl:0:0");
    std::fs::remove_file(zone0.join("name")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zone0.join("name")).unwrap();
    let zone1 = f.root.join("intel-rapl:1:0");
    std::fs::remove_file(zone1.join("max_energy_range_uj")).unwrap();
    std::os::unix::fs::symlink("/dev/urandom", zone1.join("max_energy_range_uj")).unwrap();
    let pkg1 = f.root.join("intel-rapl:1");
    std::fs::remove_file(pkg1.join("energy_uj")).unwrap();
    let fifo = std::ffi::CString::new(pkg1.join("energy_uj").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let src = PowercapSource::discover(&f.root);
    let names: Vec<String> = src.domains().iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, vec!["package-0", "dram-0"]);
    let reasons: Vec<String> = src.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("a device")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("a FIFO")), "{reasons:?}");
}

#[test]
fn skip_host_leaves_out_rapl_and_its_estimates() {
    let f = two_socket_server();
    let meter = Meter::discover(&DiscoverConfig {
        skip_host: true,
        estimate: Some(carbonfast_core::EstimateConfig::default()),
        ..measured_only(&f.root)
    })
    .unwrap();
    assert!(meter.domains().is_empty());
    assert!(meter.paths().is_empty() && meter.problems().is_empty());
    let full = Meter::discover(&measured_only(&f.root)).unwrap();
    assert_eq!(full.domains().len(), 5);
}
