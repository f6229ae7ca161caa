//! The estimate source on a fake /proc and fake cgroup trees.

mod common;

use carbonfast_core::{
    DiscoverConfig, DomainKind, Error, EstimateConfig, Meter, Part, RaplPath, RaplRoots, Scope,
};
use common::FakePowercap;
use std::fs;
use std::path::{Path, PathBuf};

const XEON_2S: &str = "\
processor : 0
model name : Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
physical id : 0
flags : fpu sse2

processor : 1
model name : Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
physical id : 1
flags : fpu sse2
";

const VIRTUAL_EPYC: &str = "\
processor : 0
model name : AMD EPYC
flags : fpu hypervisor

processor : 1
model name : AMD EPYC
flags : fpu hypervisor
";

struct FakeHost {
    _dir: tempfile::TempDir,
    proc_root: PathBuf,
    cgroup_root: PathBuf,
    powercap: FakePowercap,
}

impl FakeHost {
    fn new(cpuinfo: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let cgroup_root = dir.path().join("cgroup");
        fs::create_dir_all(proc_root.join("self")).unwrap();
        fs::create_dir_all(&cgroup_root).unwrap();
        fs::write(proc_root.join("cpuinfo"), cpuinfo).unwrap();
        fs::write(proc_root.join("meminfo"), "MemTotal:       16000000 kB\n").unwrap();
        fs::write(proc_root.join("stat"), "cpu  0 0 0 1000 0 0 0 0 0 0\n").unwrap();
        FakeHost {
            _dir: dir,
            proc_root,
            cgroup_root,
            powercap: FakePowercap::new(),
        }
    }

    fn config(&self, scope: Scope) -> DiscoverConfig {
        let absent = self.proc_root.join("absent");
        DiscoverConfig {
            rapl: RaplPath::Auto,
            roots: RaplRoots {
                powercap: Some(self.powercap.root.clone()),
                msr: Some(absent.clone()),
                perf_pmu: Some(absent),
                ..RaplRoots::default()
            },
            estimate: Some(EstimateConfig {
                scope,
                proc_root: self.proc_root.clone(),
                cgroup_root: self.cgroup_root.clone(),
                ..EstimateConfig::default()
            }),
            ..DiscoverConfig::default()
        }
    }

    fn cgroup_v2(&self, usage_usec: u64) -> PathBuf {
        fs::write(self.proc_root.join("self/cgroup"), "0::/ci/job-7\n").unwrap();
        let dir = self.cgroup_root.join("ci/job-7");
        fs::create_dir_all(&dir).unwrap();
        let stat = dir.join("cpu.stat");
        set_v2(&stat, usage_usec);
        stat
    }
}

fn set_v2(path: &Path, usage_usec: u64) {
    fs::write(
        path,
        format!("usage_usec {usage_usec}\nuser_usec {usage_usec}\nsystem_usec 0\n"),
    )
    .unwrap();
}

fn domain<'a>(meter: &'a Meter, name: &str) -> (usize, &'a carbonfast_core::Domain) {
    meter
        .domains()
        .iter()
        .enumerate()
        .find(|(_, d)| d.name == name)
        .unwrap_or_else(|| panic!("no domain {name}"))
}

fn input<'a>(d: &'a carbonfast_core::Domain, key: &str) -> &'a str {
    let e = d.estimate.as_ref().expect("estimated");
    e.inputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no input {key} in {:?}", e.inputs))
}

#[test]
fn without_counters_cpu_and_ram_are_estimated_and_flagged() {
    let host = FakeHost::new(XEON_2S);
    let meter = Meter::discover(&host.config(Scope::Process)).unwrap();
    let names: Vec<_> = meter
        .domains()
        .iter()
        .map(|d| (d.name.as_str(), d.kind, d.estimated()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("cpu", DomainKind::Package, true),
            ("ram", DomainKind::Dram, true)
        ]
    );
    let (_, cpu) = domain(&meter, "cpu");
    assert!(input(cpu, "tdp_w").contains("150 per socket (table: Intel Xeon Gold 6248)"));
    assert_eq!(input(cpu, "sockets"), "2");
    assert!(cpu
        .estimate
        .as_ref()
        .unwrap()
        .method
        .contains("TDP power curve"));
    let (_, ram) = domain(&meter, "ram");
    assert!(input(ram, "ram_gb").starts_with("16.38 (MemTotal"));
}

#[test]
fn a_machine_with_packages_but_no_dram_zone_estimates_only_dram() {
    let host = FakeHost::new(XEON_2S);
    host.powercap.zone("intel-rapl:0", "package-0", 0, 1 << 40);
    let meter = Meter::discover(&host.config(Scope::Process)).unwrap();
    let names: Vec<_> = meter
        .domains()
        .iter()
        .zip(meter.standby())
        .map(|(d, &standby)| (d.name.as_str(), d.estimated(), standby))
        .collect();
    // The package did not move at start-up: an estimate of it stands by, out of the total.
    assert_eq!(
        names,
        vec![
            ("package-0", false, false),
            ("ram", true, false),
            ("cpu", true, true)
        ]
    );
    assert_eq!(meter.in_total(), [true, true, false]);
    let start = meter.read().unwrap();
    host.powercap.set("intel-rapl:0", 5_000_000);
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!(w.joules[0], 5.0);
    assert_eq!((w.joules_low[0], w.joules_high[0]), (5.0, 5.0));
    let (lo, hi) = w.total_range_j.unwrap();
    assert!(lo > 5.0 && lo < w.total_j.unwrap() && w.total_j.unwrap() < hi);
}

#[test]
fn psys_covers_everything_so_nothing_is_estimated() {
    let host = FakeHost::new(XEON_2S);
    host.powercap.zone("intel-rapl:0", "psys", 0, 1 << 40);
    let meter = Meter::discover(&host.config(Scope::Process)).unwrap();
    let estimated = meter.domains().iter().map(|d| d.estimated());
    // An estimate stands by for a psys that did not move at start-up; none is in the total.
    assert!(estimated.eq(meter.standby().iter().copied()));
    // psys is still the total, and still stands for the CPU, with the estimate beside it.
    assert_eq!(meter.in_total(), [true, false]);
    assert_eq!(meter.parts(), [Some(Part::Cpu), Some(Part::Cpu)]);
}

#[test]
fn a_frozen_rapl_is_estimated_and_a_moving_one_is_not() {
    let host = FakeHost::new(XEON_2S);
    host.powercap
        .zone("intel-rapl:0", "package-0", 7_000_000, 1 << 40);
    host.powercap
        .zone("intel-rapl:0:0", "dram", 3_000_000, 1 << 40);
    let meter = Meter::discover(&host.config(Scope::Machine)).unwrap();
    let standby: Vec<usize> = (0..meter.domains().len())
        .filter(|&d| meter.standby()[d])
        .collect();
    let names: Vec<&str> = standby
        .iter()
        .map(|&d| meter.domains()[d].name.as_str())
        .collect();
    assert_eq!(names, ["cpu", "ram"]);
    // Neither counter moves over 250 of RAPL's refreshes: frozen, so the estimate counts.
    let start = meter.read().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!(&w.stalled[..2], [true, true]);
    assert_eq!(w.counted, [false, false, true, true]);
    let estimate: f64 = standby.iter().map(|&d| w.joules[d]).sum();
    assert!(estimate > 0.0);
    assert_eq!(w.total_j, Some(estimate));
    assert_eq!(meter.total_between(&start, &end), Some(estimate));
    // The package moves: it is measured, and the estimate is left out.
    host.powercap.set("intel-rapl:0", 9_000_000);
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!(w.counted, [true, false, false, false]);
    assert_eq!(w.total_j, Some(2.0));
}

#[test]
fn container_scope_follows_cgroup_v2_cpu_time() {
    let host = FakeHost::new(XEON_2S);
    let stat = host.cgroup_v2(0);
    let mut config = host.config(Scope::Container);
    let est = config.estimate.as_mut().unwrap();
    est.cpu_tdp_w = Some(100.0);
    est.cpu_threads = Some(4);
    let meter = Meter::discover(&config).unwrap();
    let (i, cpu) = domain(&meter, "cpu");
    assert_eq!(input(cpu, "tdp_w"), "100 per socket (set by user)");
    assert!(input(cpu, "cpu_time").contains("ci/job-7/cpu.stat"));

    let start = meter.read().unwrap();
    set_v2(&stat, 2_000_000); // two CPU-seconds
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    // 2 sockets x 100 W: idle 12% = 24 W, full 102% = 204 W; 2 CPU-s over 4 threads.
    let expected = 24.0 * w.duration_ns as f64 * 1e-9 + (204.0 - 24.0) * 2.0 / 4.0;
    assert!(
        (w.joules[i] - expected).abs() < 0.01,
        "{} vs {expected}",
        w.joules[i]
    );
    assert!(w.joules_low[i] < w.joules[i] && w.joules[i] < w.joules_high[i]);
}

#[test]
fn container_scope_reads_cgroup_v1_cpuacct() {
    let host = FakeHost::new(VIRTUAL_EPYC);
    fs::write(
        host.proc_root.join("self/cgroup"),
        "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n",
    )
    .unwrap();
    let dir = host.cgroup_root.join("cpu,cpuacct/docker/abc");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("cpuacct.usage"), "1000000000\n").unwrap();
    let mut config = host.config(Scope::Container);
    config.estimate.as_mut().unwrap().cpu_power_w = None;
    let meter = Meter::discover(&config).unwrap();
    let (i, cpu) = domain(&meter, "cpu");
    assert!(input(cpu, "fallback").contains("not in the TDP table"));
    let start = meter.read().unwrap();
    fs::write(dir.join("cpuacct.usage"), "3000000000\n").unwrap();
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    // Per-thread fallback on 2 threads: idle 1.48 W, full 7 W; 2 CPU-s over 2 threads.
    let expected = 1.48 * w.duration_ns as f64 * 1e-9 + (7.0 - 1.48) * 2.0 / 2.0;
    assert!(
        (w.joules[i] - expected).abs() < 0.01,
        "{} vs {expected}",
        w.joules[i]
    );
}

#[test]
fn machine_scope_reads_proc_stat() {
    let host = FakeHost::new(VIRTUAL_EPYC);
    let meter = Meter::discover(&host.config(Scope::Machine)).unwrap();
    let (i, _) = domain(&meter, "cpu");
    let start = meter.read().unwrap();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    fs::write(
        host.proc_root.join("stat"),
        format!("cpu  {} 0 0 1000 0 0 0 0 0 0\n", ticks),
    )
    .unwrap();
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    let expected = 1.48 * w.duration_ns as f64 * 1e-9 + (7.0 - 1.48) * 1.0 / 2.0;
    assert!(
        (w.joules[i] - expected).abs() < 0.01,
        "{} vs {expected}",
        w.joules[i]
    );
}

#[test]
fn a_vm_does_not_apply_a_whole_host_tdp() {
    let cpuinfo = VIRTUAL_EPYC.replace("AMD EPYC", "AMD EPYC 7763 64-Core Processor");
    let host = FakeHost::new(&cpuinfo);
    let meter = Meter::discover(&host.config(Scope::Process)).unwrap();
    let (_, cpu) = domain(&meter, "cpu");
    assert!(input(cpu, "fallback").contains("virtual machine"));
    assert!(input(cpu, "fallback").contains("AMD EPYC 7763"));
}

#[test]
fn fixed_powers_set_by_the_user_are_used_as_given() {
    let host = FakeHost::new(VIRTUAL_EPYC);
    let mut config = host.config(Scope::Process);
    let est = config.estimate.as_mut().unwrap();
    est.cpu_power_w = Some(40.0);
    est.ram_power_w = Some(5.0);
    let meter = Meter::discover(&config).unwrap();
    let start = meter.read().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    let secs = w.duration_ns as f64 * 1e-9;
    assert!((w.joules[0] - 40.0 * secs).abs() < 0.01);
    assert!((w.joules[1] - 5.0 * secs).abs() < 0.01);
    assert_eq!(w.joules_low, w.joules);
    let (_, cpu) = domain(&meter, "cpu");
    assert!(cpu
        .estimate
        .as_ref()
        .unwrap()
        .method
        .contains("set by the user"));
}

#[test]
fn a_container_scope_without_a_cgroup_counter_says_what_to_do() {
    let host = FakeHost::new(VIRTUAL_EPYC);
    fs::write(host.proc_root.join("self/cgroup"), "0::/nowhere\n").unwrap();
    match Meter::discover(&host.config(Scope::Container)) {
        Err(Error::Missing { fix, .. }) => assert!(fix.contains("process or machine scope")),
        Err(e) => panic!("expected Missing, got {e:?}"),
        Ok(_) => panic!("expected an error"),
    }
}
