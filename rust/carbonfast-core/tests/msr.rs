//! The MSR source on a fake /dev/cpu of sparse files, with fake CPU topology and cpuinfo.

mod common;

use carbonfast_core::source::msr::MsrSource;
use carbonfast_core::source::Source;
use carbonfast_core::{DiscoverConfig, DomainKind, Error, Meter, RaplPath, RaplRoots, Reading};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const INTEL_UNIT: u64 = 0x606;
const INTEL_PKG: u64 = 0x611;
const INTEL_DRAM: u64 = 0x619;
const INTEL_PP0: u64 = 0x639;
const INTEL_PP1: u64 = 0x641;
const INTEL_PSYS: u64 = 0x64D;
const AMD_UNIT: u64 = 0xC001_0299;

/// Power unit 3, energy status unit 14, time unit 10: what most Intel parts report.
const UNIT_ESU_14: u64 = 0x000A_0E03;

struct FakeMachine {
    _dir: tempfile::TempDir,
    msr_root: PathBuf,
    cpu_root: PathBuf,
    proc_root: PathBuf,
}

impl FakeMachine {
    /// `packages[n]` is CPU n's physical package id.
    fn new(cpuinfo: &str, packages: &[u64]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let msr_root = dir.path().join("dev/cpu");
        let cpu_root = dir.path().join("sys/devices/system/cpu");
        let proc_root = dir.path().join("proc");
        fs::create_dir_all(&msr_root).unwrap();
        fs::create_dir_all(&proc_root).unwrap();
        fs::write(proc_root.join("cpuinfo"), cpuinfo).unwrap();
        // Directories that sit beside cpuN in sysfs and are no CPU.
        fs::create_dir_all(cpu_root.join("cpufreq")).unwrap();
        fs::create_dir_all(cpu_root.join("cpuidle")).unwrap();
        for (cpu, package) in packages.iter().enumerate() {
            let topo = cpu_root.join(format!("cpu{cpu}/topology"));
            fs::create_dir_all(&topo).unwrap();
            fs::write(topo.join("physical_package_id"), format!("{package}\n")).unwrap();
            let dev = msr_root.join(cpu.to_string());
            fs::create_dir_all(&dev).unwrap();
            File::create(dev.join("msr")).unwrap();
        }
        FakeMachine {
            _dir: dir,
            msr_root,
            cpu_root,
            proc_root,
        }
    }

    fn device(&self, cpu: u32) -> PathBuf {
        self.msr_root.join(cpu.to_string()).join("msr")
    }

    /// Writes register `reg` of `cpu` as the msr driver returns it: 8 little-endian bytes at
    /// offset `reg`, in place, so open files see it.
    fn set(&self, cpu: u32, reg: u64, value: u64) {
        let f = OpenOptions::new()
            .write(true)
            .open(self.device(cpu))
            .unwrap();
        f.write_all_at(&value.to_le_bytes(), reg).unwrap();
    }

    /// Sets AMD's registers. They are numbered one apart (unit 0xC0010299, core 0xC001029A,
    /// package 0xC001029B) and the driver maps register R to offset R, so in a plain file their
    /// 8-byte values overlap and cannot be chosen freely. These bytes make the unit register
    /// carry `esu` and the package read `pkg`; the core register then reads the bytes in
    /// between, `esu | pkg << 8` in 32 bits, which is returned.
    fn set_amd(&self, cpu: u32, esu: u8, pkg: u32) -> u64 {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x03; // power unit
        bytes[1] = esu;
        bytes[2..6].copy_from_slice(&pkg.to_le_bytes());
        let f = OpenOptions::new()
            .write(true)
            .open(self.device(cpu))
            .unwrap();
        f.write_all_at(&bytes, AMD_UNIT).unwrap();
        (u64::from(esu) | u64::from(pkg) << 8) & u64::from(u32::MAX)
    }

    fn discover(&self) -> MsrSource {
        MsrSource::discover(&self.msr_root, &self.cpu_root, &self.proc_root)
    }
}

fn cpuinfo(vendor: &str, family: u32, model: u32) -> String {
    format!(
        "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n\
         model name\t: Some CPU\n\n"
    )
}

fn names(src: &MsrSource) -> Vec<(String, DomainKind)> {
    src.domains()
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect()
}

/// A Kaby Lake laptop: family 6 model 0x8E, every Intel domain.
fn intel_client() -> FakeMachine {
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x8E), &[0, 0, 0, 0]);
    m.set(0, INTEL_UNIT, UNIT_ESU_14);
    m.set(0, INTEL_PKG, 1_000);
    m.set(0, INTEL_DRAM, 2_000);
    m.set(0, INTEL_PP0, 3_000);
    m.set(0, INTEL_PP1, 4_000);
    m.set(0, INTEL_PSYS, 5_000);
    m
}

#[test]
fn intel_client_domains_and_units() {
    let m = intel_client();
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(src.name(), "msr");
    assert_eq!(src.root(), m.msr_root.as_path());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
            ("uncore-0".into(), DomainKind::Uncore),
            ("dram-0".into(), DomainKind::Dram),
            ("psys".into(), DomainKind::Psys),
        ]
    );
    for d in src.domains() {
        // ESU 14: one count is 2^-14 J, on DRAM too, since this is no server part.
        assert_eq!(d.units_per_joule, 16_384.0, "{}", d.name);
        assert_eq!(d.max_raw, u64::from(u32::MAX));
        assert_eq!(d.reading, Reading::Energy);
        assert_eq!(d.source, "msr");
        assert_eq!(d.path, m.device(0));
    }
    let mut raw = vec![0; 5];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![1_000, 3_000, 4_000, 2_000, 5_000]);
}

#[test]
fn absent_optional_domains_are_skipped_silently() {
    // A desktop without DRAM, uncore or psys counters: those registers read 0 (or lie past the
    // end of the file, which the source treats like the driver's EIO).
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x3C), &[0, 0]);
    m.set(0, INTEL_UNIT, UNIT_ESU_14);
    m.set(0, INTEL_PKG, 7);
    m.set(0, INTEL_PP0, 8);
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
        ]
    );
}

#[test]
fn intel_server_dram_has_a_fixed_unit() {
    // Skylake-SP (model 0x55) with two sockets: DRAM counts 2^-16 J whatever 0x606 says.
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x55), &[0, 0, 1, 1]);
    for cpu in [0, 2] {
        m.set(cpu, INTEL_UNIT, UNIT_ESU_14);
        m.set(cpu, INTEL_PKG, 100 + u64::from(cpu));
        m.set(cpu, INTEL_DRAM, 200 + u64::from(cpu));
    }
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    let units: Vec<_> = src
        .domains()
        .iter()
        .map(|d| (d.name.as_str(), d.units_per_joule, d.path.clone()))
        .collect();
    assert_eq!(
        units,
        vec![
            ("package-0", 16_384.0, m.device(0)),
            ("dram-0", 65_536.0, m.device(0)),
            ("package-1", 16_384.0, m.device(2)),
            ("dram-1", 65_536.0, m.device(2)),
        ]
    );
    let mut raw = vec![0; 4];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![100, 200, 102, 202]);
}

#[test]
fn packages_come_from_topology_one_cpu_each_lowest_first() {
    // Package ids need not be dense or follow CPU order; CPU numbers need not be contiguous.
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x8E), &[3, 0, 3, 0, 7, 7, 7, 7]);
    for cpu in 0..8 {
        m.set(cpu, INTEL_UNIT, UNIT_ESU_14);
        m.set(cpu, INTEL_PKG, 10 + u64::from(cpu));
    }
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    let read_from: Vec<_> = src
        .domains()
        .iter()
        .map(|d| (d.name.clone(), d.path.clone()))
        .collect();
    assert_eq!(
        read_from,
        vec![
            ("package-0".into(), m.device(0)),
            ("package-1".into(), m.device(1)),
            ("package-2".into(), m.device(4)),
        ]
    );
    let mut raw = vec![0; 3];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![10, 11, 14]);
}

#[test]
fn unreadable_topology_falls_back_to_cpu_0_with_a_note() {
    let m = intel_client();
    fs::remove_dir_all(&m.cpu_root).unwrap();
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(src.domains()[0].name, "package-0");
    assert_eq!(src.domains()[0].path, m.device(0));
    assert!(src.notes().iter().any(|n| n.contains("topology")));
}

#[test]
fn amd_units_and_registers() {
    let m = FakeMachine::new(&cpuinfo("AuthenticAMD", 0x19, 0x01), &[0, 0, 1, 1]);
    let mut core = Vec::new();
    for cpu in [0, 2] {
        core.push(m.set_amd(cpu, 16, 1_000 + cpu));
        // Intel's registers mean nothing here and must not be read.
        m.set(cpu, INTEL_PKG, 9_999);
        m.set(cpu, INTEL_DRAM, 9_999);
    }
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
            ("package-1".into(), DomainKind::Package),
            ("core-1".into(), DomainKind::Core),
        ]
    );
    assert!(src.domains().iter().all(|d| d.units_per_joule == 65_536.0));
    assert_eq!(src.domains()[2].path, m.device(2));
    let mut raw = vec![0; 4];
    src.read_raw(&mut raw).unwrap();
    assert_eq!(raw, vec![1_000, core[0], 1_002, core[1]]);
    // The core register covers one core only; the user is told.
    assert!(src
        .notes()
        .iter()
        .any(|n| n.starts_with("core-1:") && n.contains("CPU 2") && n.contains("core only")));
}

#[test]
fn amd_energy_unit_comes_from_its_own_register() {
    let m = FakeMachine::new(&cpuinfo("AuthenticAMD", 0x17, 0x31), &[0]);
    m.set_amd(0, 14, 77);
    m.set(0, INTEL_UNIT, 0x000A_1F03); // ESU 31, which must not be used
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(src.domains()[0].name, "package-0");
    assert_eq!(src.domains()[0].units_per_joule, 16_384.0);
}

#[test]
fn hygon_is_read_as_amd() {
    let m = FakeMachine::new(&cpuinfo("HygonGenuine", 0x18, 0x00), &[0]);
    m.set_amd(0, 16, 5);
    let src = m.discover();
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        names(&src),
        vec![
            ("package-0".into(), DomainKind::Package),
            ("core-0".into(), DomainKind::Core),
        ]
    );
}

#[test]
fn a_32_bit_wrap_is_unfolded_exactly_by_the_meter() {
    let m = intel_client();
    m.set(0, INTEL_PKG, 0xFFFF_FF00);
    m.set(0, INTEL_DRAM, 10);
    let src = m.discover();
    let names: Vec<_> = src.domains().iter().map(|d| d.name.clone()).collect();
    let pkg = names.iter().position(|n| n == "package-0").unwrap();
    let dram = names.iter().position(|n| n == "dram-0").unwrap();
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let start = meter.read().unwrap();
    m.set(0, INTEL_PKG, 0xFFFF_FFF0);
    m.set(0, INTEL_DRAM, 20);
    meter.read().unwrap();
    // Past 2^32: the register's reserved upper half is set too, which the source masks off.
    m.set(0, INTEL_PKG, 0xDEAD_0001_0000_0100);
    m.set(0, INTEL_DRAM, 16_394);
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    // 0x100 to the wrap, then 0x100: 512 counts of 2^-14 J.
    assert_eq!(w.joules[pkg], 512.0 / 16_384.0);
    assert_eq!(w.joules[dram], 1.0);
    // Package and DRAM count; core, uncore and psys do not.
    assert_eq!(w.total_j, Some(1.0 + 512.0 / 16_384.0));
    let wraps = meter.wraps();
    assert_eq!((wraps[pkg], wraps[dram]), (1, 0));
}

#[test]
fn a_missing_root_says_modprobe_msr() {
    let m = intel_client();
    fs::remove_dir_all(&m.msr_root).unwrap();
    let src = m.discover();
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { path, fix, .. }] => {
            assert_eq!(path, &m.msr_root);
            assert!(fix.contains("sudo modprobe msr"), "{fix}");
        }
        other => panic!("expected one Missing problem, got {other:?}"),
    }
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let a = meter.read().unwrap();
    let b = meter.read().unwrap();
    assert_eq!(meter.window(&a, &b).total_j, None);
}

#[test]
fn a_missing_device_says_modprobe_msr() {
    let m = intel_client();
    fs::remove_file(m.device(0)).unwrap();
    let src = m.discover();
    assert!(src.domains().is_empty());
    assert!(matches!(
        src.problems(),
        [Error::Missing { path, fix, .. }] if path == &m.device(0) && fix.contains("modprobe msr")
    ));
}

#[test]
fn an_unknown_vendor_is_a_problem_that_says_intel_and_amd_only() {
    let m = FakeMachine::new(&cpuinfo("CentaurHauls", 6, 0x0F), &[0]);
    m.set(0, INTEL_UNIT, UNIT_ESU_14);
    m.set(0, INTEL_PKG, 5);
    let src = m.discover();
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { why, fix, .. }] => {
            assert!(why.contains("CentaurHauls"), "{why}");
            assert!(fix.contains("Intel") && fix.contains("AMD"), "{fix}");
        }
        other => panic!("expected one problem, got {other:?}"),
    }
}

#[test]
fn an_amd_cpu_before_zen_has_no_rapl_registers() {
    let m = FakeMachine::new(&cpuinfo("AuthenticAMD", 0x15, 0x02), &[0]);
    let src = m.discover();
    assert!(src.domains().is_empty());
    assert!(matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("17h")));
}

#[test]
fn a_package_register_that_reads_zero_is_a_problem() {
    // What a hypervisor that stubs RAPL looks like.
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x55), &[0, 1]);
    m.set(0, INTEL_UNIT, UNIT_ESU_14);
    m.set(0, INTEL_PKG, 0);
    m.set(1, INTEL_UNIT, UNIT_ESU_14);
    m.set(1, INTEL_PKG, 42);
    let src = m.discover();
    assert_eq!(names(&src), vec![("package-1".into(), DomainKind::Package)]);
    // Beside package-1, package-0 (and the DRAM of this server part) would drop out of the
    // total: they are listed for estimates.
    let unread: Vec<(String, DomainKind)> = src
        .unreadable()
        .iter()
        .map(|u| (u.name.clone(), u.kind))
        .collect();
    assert_eq!(
        unread,
        vec![
            ("package-0".into(), DomainKind::Package),
            ("dram-0".into(), DomainKind::Dram)
        ]
    );
    match src.problems() {
        [Error::Missing { path, why, .. }] => {
            assert_eq!(path, &m.device(0));
            assert!(why.contains("0x611"), "{why}");
        }
        other => panic!("expected one Missing problem, got {other:?}"),
    }
}

#[test]
fn a_missing_unit_register_is_a_problem() {
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x8E), &[0]);
    m.set(0, INTEL_PKG, 42);
    let src = m.discover();
    assert!(src.domains().is_empty());
    assert!(matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("0x606")));
}

#[test]
fn a_missing_cpuinfo_is_a_problem() {
    let m = intel_client();
    fs::remove_file(m.proc_root.join("cpuinfo")).unwrap();
    let src = m.discover();
    assert!(src.domains().is_empty());
    assert!(matches!(src.problems(), [Error::Missing { path, .. }] if path.ends_with("cpuinfo")));
}

/// On real hardware (run with --ignored, as root, with the msr driver loaded): the registers
/// give plausible package power under load and agree with powercap where it exists.
#[test]
#[ignore = "needs /dev/cpu/*/msr, CAP_SYS_RAWIO and an Intel or AMD CPU with RAPL"]
fn real_registers_agree_with_powercap() {
    use carbonfast_core::source::{msr, powercap};
    let src = MsrSource::discover(
        std::path::Path::new(msr::DEFAULT_ROOT),
        std::path::Path::new(msr::DEFAULT_CPU_ROOT),
        std::path::Path::new("/proc"),
    );
    eprintln!("msr domains: {:#?}", src.domains());
    eprintln!(
        "msr problems: {:#?}\nmsr notes: {:#?}",
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
        if d.source != "msr" {
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
                "{}: msr {j} J, powercap {r} J",
                d.name
            );
        }
    }
}

fn roots(m: &FakeMachine, powercap: &common::FakePowercap) -> RaplRoots {
    RaplRoots {
        powercap: Some(powercap.root.clone()),
        msr: Some(m.msr_root.clone()),
        cpu_topology: Some(m.cpu_root.clone()),
        perf_pmu: Some(m.proc_root.join("no-power-pmu")),
        proc: Some(m.proc_root.clone()),
    }
}

#[test]
fn auto_prefers_the_path_that_covers_most_domains() {
    let m = intel_client(); // package, core, uncore, dram, psys
    let powercap = common::FakePowercap::new();
    powercap.zone("intel-rapl:0", "package-0", 10, 1 << 40); // package only
    let meter = Meter::discover(&DiscoverConfig {
        rapl: RaplPath::Auto,
        roots: roots(&m, &powercap),
        estimate: None,
        ..DiscoverConfig::default()
    })
    .unwrap();
    assert!(meter.domains().iter().all(|d| d.source == "msr"));
    let paths: Vec<_> = meter
        .paths()
        .iter()
        .map(|p| (p.name, p.chosen, p.domains.len(), p.read_ns.is_some()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("powercap", false, 1, true),
            ("msr", true, 5, true),
            ("perf", false, 0, false),
        ]
    );
    let perf = &meter.paths()[2];
    assert_eq!(perf.problems[0].kind, "missing");
}

#[test]
fn a_named_path_is_used_even_when_another_covers_more() {
    let m = intel_client();
    let powercap = common::FakePowercap::new();
    powercap.zone("intel-rapl:0", "package-0", 10, 1 << 40);
    let meter = Meter::discover(&DiscoverConfig {
        rapl: RaplPath::Powercap,
        roots: roots(&m, &powercap),
        estimate: None,
        ..DiscoverConfig::default()
    })
    .unwrap();
    let names: Vec<_> = meter.domains().iter().map(|d| d.source).collect();
    assert_eq!(names, vec!["powercap"]);
}

#[test]
fn a_named_path_that_cannot_be_read_fails_with_its_fix() {
    let m = intel_client();
    let powercap = common::FakePowercap::new();
    let mut r = roots(&m, &powercap);
    r.msr = Some(m.proc_root.join("no-msr"));
    let err = Meter::discover(&DiscoverConfig {
        rapl: RaplPath::Msr,
        roots: r,
        estimate: None,
        ..DiscoverConfig::default()
    })
    .err()
    .expect("msr cannot be read");
    assert_eq!(err.kind(), "missing");
    assert!(err.fix().unwrap().contains("modprobe msr"), "{err}");
}

#[test]
fn with_no_usable_path_every_paths_problems_are_reported() {
    let m = FakeMachine::new(&cpuinfo("GenuineIntel", 6, 0x8E), &[0]);
    let powercap = common::FakePowercap::new();
    let meter = Meter::discover(&DiscoverConfig {
        rapl: RaplPath::Auto,
        roots: roots(&m, &powercap),
        estimate: None,
        ..DiscoverConfig::default()
    })
    .unwrap();
    assert!(meter.domains().is_empty());
    let sources: std::collections::BTreeSet<_> =
        meter.problems().iter().map(|p| p.source).collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec!["msr", "perf", "powercap"]
    );
}
