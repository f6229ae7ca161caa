//! hwmon on fake trees in the kernel's layout: each driver's sensors mapped to the right
//! domains, what is left out said so, what cannot be read reported with its fix, and the
//! total made of the most complete reading.

mod common;

use carbonfast_core::source::hwmon::{HwmonOptions, HwmonSource};
use carbonfast_core::source::Source;
use carbonfast_core::{
    DiscoverConfig, DomainKind, Error, EstimateConfig, Meter, RaplPath, RaplRoots, Reading,
};
use common::FakePowercap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// /sys in miniature: class/hwmon/hwmonN are symlinks to devices/<parent>/hwmon/hwmonN, whose
/// `device` links back to the parent.
struct FakeHwmon {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    next: u32,
}

impl FakeHwmon {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("class/hwmon");
        fs::create_dir_all(&root).unwrap();
        FakeHwmon {
            _dir: dir,
            base,
            root,
            next: 0,
        }
    }

    /// Adds hwmonN named `name` under the device at `parent` ("pci0000:00/0000:03:00.0");
    /// returns its path under class/hwmon.
    fn device(&mut self, parent: &str, name: &str) -> PathBuf {
        let n = self.next;
        self.next += 1;
        let dev = self.base.join("devices").join(parent);
        let dir = dev.join("hwmon").join(format!("hwmon{n}"));
        fs::create_dir_all(&dir).unwrap();
        let leaf = Path::new(parent).file_name().unwrap().to_str().unwrap();
        symlink(format!("../../../{leaf}"), dir.join("device")).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        let link = self.root.join(format!("hwmon{n}"));
        symlink(
            Path::new("../../devices")
                .join(parent)
                .join("hwmon")
                .join(format!("hwmon{n}")),
            &link,
        )
        .unwrap();
        link
    }

    fn amdgpu(&mut self, pci: &str, microwatts: u64) -> PathBuf {
        let hw = self.device(&format!("pci0000:00/{pci}"), "amdgpu");
        write(&hw, "power1_average", microwatts);
        write(&hw, "temp1_input", 45_000);
        hw
    }

    fn intel(&mut self, pci: &str, driver: &str, counters: &[(&str, u64)]) -> PathBuf {
        let hw = self.device(&format!("pci0000:00/{pci}"), driver);
        for (i, (label, uj)) in counters.iter().enumerate() {
            write(&hw, &format!("energy{}_input", i + 1), uj);
            if !label.is_empty() {
                write(&hw, &format!("energy{}_label", i + 1), label);
            }
        }
        hw
    }

    /// An ACPI power meter as most kernels lay it out: its attributes on the ACPI device.
    fn power_meter(&mut self, acpi: &str, microwatts: u64, oem: Option<&str>) -> PathBuf {
        let hw = self.device(&format!("LNXSYSTM:00/LNXSYBUS:00/{acpi}"), "power_meter");
        write(&hw, "device/power1_average", microwatts);
        write(&hw, "device/power1_average_interval", 50);
        if let Some(oem) = oem {
            write(&hw, "device/power1_oem_info", oem);
        }
        hw
    }

    /// A Jetson's ina3221: (label, mV, mA, enabled) per channel.
    fn ina3221(&mut self, addr: &str, rails: &[(&str, u64, u64, bool)]) -> PathBuf {
        let hw = self.device(&format!("platform/3160000.i2c/i2c-1/{addr}"), "ina3221");
        for (i, (label, mv, ma, on)) in rails.iter().enumerate() {
            let k = i + 1;
            write(&hw, &format!("in{k}_label"), label);
            write(&hw, &format!("in{k}_input"), mv);
            write(&hw, &format!("curr{k}_input"), ma);
            write(&hw, &format!("in{k}_enable"), u8::from(*on));
        }
        hw
    }

    /// amd_energy: per-core counters first, then one per socket, as the driver numbers them.
    fn amd_energy(&mut self, cores: u32, sockets: &[u64]) -> PathBuf {
        let hw = self.device("platform/amd_energy.0", "amd_energy");
        for c in 0..cores {
            write(&hw, &format!("energy{}_input", c + 1), 1_000 + u64::from(c));
            write(
                &hw,
                &format!("energy{}_label", c + 1),
                format!("Ecore{c:03}"),
            );
        }
        for (s, uj) in sockets.iter().enumerate() {
            let n = cores as usize + s + 1;
            write(&hw, &format!("energy{n}_input"), uj);
            write(&hw, &format!("energy{n}_label"), format!("Esocket{s}"));
        }
        hw
    }
}

fn write(hw: &Path, file: &str, value: impl std::fmt::Display) {
    fs::write(hw.join(file), format!("{value}\n")).unwrap();
}

fn gpus_on() -> HwmonOptions {
    HwmonOptions {
        gpu: true,
        ..HwmonOptions::default()
    }
}

fn found(src: &HwmonSource) -> Vec<(String, DomainKind)> {
    src.domains()
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect()
}

fn read(src: &HwmonSource) -> Vec<u64> {
    let mut raw = vec![0; src.domains().len()];
    src.read_raw(&mut raw).unwrap();
    raw
}

fn noted(src: &HwmonSource, words: &[&str]) -> bool {
    src.notes()
        .iter()
        .any(|n| words.iter().all(|w| n.contains(w)))
}

#[test]
fn a_missing_root_is_nothing_to_read_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let src = HwmonSource::discover(Some(&dir.path().join("nope")), &gpus_on());
    assert!(src.domains().is_empty() && src.problems().is_empty());
}

#[test]
fn an_amd_gpu_is_its_power_in_milliwatts_named_by_pci_address() {
    let mut f = FakeHwmon::new();
    let hw = f.amdgpu("0000:03:00.0", 150_000_000);
    write(&hw, "device/product_name", "AMD Instinct MI210");
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        found(&src),
        [("gpu-0000:03:00.0".to_string(), DomainKind::Gpu)]
    );
    let d = &src.domains()[0];
    assert_eq!(d.reading, Reading::PowerMilliwatts);
    assert_eq!(d.units_per_joule, 1e9);
    assert_eq!(d.source, "hwmon");
    assert_eq!(d.label, "AMD Instinct MI210");
    assert!(d.path.ends_with("hwmon0/power1_average"));
    assert_eq!(read(&src), [150_000]);
    assert!(noted(&src, &["gpu-0000:03:00.0", "integrated from power"]));

    // The instantaneous reading, where the driver has one, is preferred to the average.
    write(&hw, "power1_input", 151_499_999);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.domains()[0].path.ends_with("power1_input"));
    assert_eq!(read(&src), [151_500]);
}

#[test]
fn a_gpus_stated_power_cap_bounds_its_plausible_readings() {
    let mut f = FakeHwmon::new();
    let amd = f.amdgpu("0000:03:00.0", 150_000_000);
    write(&amd, "power1_cap", 300_000_000);
    write(&amd, "power1_cap_max", 350_000_000);
    let xe = f.intel("0000:04:00.0", "xe", &[("card", 7)]);
    write(&xe, "power1_max", 120_000_000);
    f.amdgpu("0000:05:00.0", 150_000_000);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    let ceilings: Vec<_> = src.domains().iter().map(|d| d.max_power_w).collect();
    // Twice the highest cap stated; none stated: the meter's own ceiling.
    assert_eq!(ceilings, [Some(700.0), Some(240.0), None]);
}

#[test]
fn an_amd_gpu_that_amdsmi_measures_is_counted_there_once() {
    let mut f = FakeHwmon::new();
    f.amdgpu("0000:03:00.0", 150_000_000);
    f.amdgpu("0000:83:00.0", 90_000_000);
    let options = HwmonOptions {
        gpu: true,
        skip_pci: vec!["0000:03:00.0".into()],
        ..HwmonOptions::default()
    };
    let src = HwmonSource::discover(Some(&f.root), &options);
    assert_eq!(
        found(&src),
        [("gpu-0000:83:00.0".to_string(), DomainKind::Gpu)]
    );
    assert!(noted(&src, &["0000:03:00.0", "amdsmi", "counted once"]));
}

#[test]
fn gpus_off_reads_no_gpu_sensor() {
    let mut f = FakeHwmon::new();
    f.amdgpu("0000:03:00.0", 150_000_000);
    f.intel("0000:04:00.0", "xe", &[("", 5)]);
    let src = HwmonSource::discover(Some(&f.root), &HwmonOptions::default());
    assert!(src.domains().is_empty());
    assert!(noted(&src, &["hwmon0 (amdgpu)", "not read"]));
    assert!(noted(&src, &["hwmon1 (xe)", "not read"]));
}

#[test]
fn an_amd_apu_is_reported_beside_the_cpu_not_added() {
    let mut f = FakeHwmon::new();
    let hw = f.amdgpu("0000:c1:00.0", 9_000_000);
    write(&hw, "power1_label", "slowPPT");
    write(&hw, "power2_average", 9_100_000);
    write(&hw, "power2_label", "fastPPT");
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert_eq!(
        found(&src),
        [("gpu-0000:c1:00.0".to_string(), DomainKind::Part)]
    );
    assert!(noted(&src, &["APU", "CPU cores included"]));
}

#[test]
fn an_intel_card_counts_and_its_package_is_a_part_of_it() {
    let mut f = FakeHwmon::new();
    f.intel(
        "0000:03:00.0",
        "xe",
        &[("card", 7_000_000), ("pkg", 5_000_000)],
    );
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        found(&src),
        [
            ("gpu-0000:03:00.0".to_string(), DomainKind::Gpu),
            ("gpu-0000:03:00.0-pkg".to_string(), DomainKind::Part),
        ]
    );
    for d in src.domains() {
        assert_eq!(d.reading, Reading::Energy);
        assert_eq!(d.units_per_joule, 1e6);
        assert_eq!(d.max_raw, u64::MAX);
    }
    assert_eq!(read(&src), [7_000_000, 5_000_000]);
}

#[test]
fn a_lone_intel_counter_is_the_gpu_labelled_or_not() {
    let mut f = FakeHwmon::new();
    f.intel("0000:03:00.0", "i915", &[("", 42)]);
    // xe on DG2 shows only the package counter.
    f.intel("0000:04:00.0", "xe", &[("", 0), ("pkg", 43)]);
    fs::remove_file(f.root.join("hwmon1/energy1_input")).unwrap();
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert_eq!(
        found(&src),
        [
            ("gpu-0000:03:00.0".to_string(), DomainKind::Gpu),
            ("gpu-0000:04:00.0".to_string(), DomainKind::Gpu),
        ]
    );
    assert_eq!(read(&src), [42, 43]);
}

#[test]
fn a_plain_acpi_power_meter_is_the_platform() {
    let mut f = FakeHwmon::new();
    f.power_meter("ACPI000D:00", 400_000_000, None);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        found(&src),
        [("platform-0".to_string(), DomainKind::Platform)]
    );
    let d = &src.domains()[0];
    assert!(d.path.ends_with("hwmon0/device/power1_average"));
    assert_eq!(d.reading, Reading::PowerMilliwatts);
    // It averages over 50 ms: the sampler reads it no more often than that.
    assert_eq!(src.min_read_interval_ns(), 50_000_000);
    assert_eq!(d.update_period_ns, None);
    assert_eq!(read(&src), [400_000]);
}

#[test]
fn grace_meters_are_placed_by_their_oem_labels() {
    let mut f = FakeHwmon::new();
    f.power_meter("ACPI000D:00", 600_000_000, Some("Module Power Socket 0"));
    f.power_meter("ACPI000D:01", 250_000_000, Some("Grace Power Socket 0"));
    f.power_meter("ACPI000D:02", 180_000_000, Some("  cpu power SOCKET 0 "));
    f.power_meter("ACPI000D:03", 30_000_000, Some("SysIO Power Socket 0"));
    f.power_meter("ACPI000D:04", 500_000_000, Some("Module Power Socket 1"));
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert_eq!(
        found(&src),
        [
            ("module-0".to_string(), DomainKind::Module),
            ("package-0".to_string(), DomainKind::Package),
            ("core-0".to_string(), DomainKind::Core),
            ("sysio-0".to_string(), DomainKind::Part),
            ("module-1".to_string(), DomainKind::Module),
        ]
    );
    assert_eq!(src.domains()[1].label, "Grace Power Socket 0");
    assert!(src.covers_memory());
    // The modules alone are the total.
    let total: Vec<bool> = carbonfast_core::meter::in_total(src.domains());
    assert_eq!(total, [true, false, false, false, true]);
}

#[test]
fn jetson_rails_are_volts_times_amps_and_vdd_in_is_the_platform() {
    let mut f = FakeHwmon::new();
    f.ina3221(
        "1-0040",
        &[
            ("VDD_IN", 5_080, 1_234, true),
            ("VDD_CPU_GPU_CV", 5_000, 400, true),
            ("VDD_SOC", 5_000, 300, false),
        ],
    );
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(
        found(&src),
        [
            ("vdd_in".to_string(), DomainKind::Platform),
            ("vdd_cpu_gpu_cv".to_string(), DomainKind::Part),
        ]
    );
    // 5.080 V x 1.234 A = 6.26872 W.
    assert_eq!(read(&src), [6_269, 2_000]);
    // Both files are read on every read.
    write(&f.root.join("hwmon0"), "curr1_input", 2_000);
    write(&f.root.join("hwmon0"), "in1_input", 5_000);
    assert_eq!(read(&src)[0], 10_000);
    // Shunt noise a little below zero on an idle rail reads as nothing, not as a failure.
    write(&f.root.join("hwmon0"), "curr2_input", -3);
    assert_eq!(read(&src)[1], 0);
    assert_eq!(
        carbonfast_core::meter::in_total(src.domains()),
        [true, false]
    );
}

#[test]
fn amd_energy_sockets_are_packages_only_where_rapl_does_not_measure_them() {
    let mut f = FakeHwmon::new();
    f.amd_energy(4, &[10_000, 20_000]);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert_eq!(
        found(&src),
        [
            ("package-0".to_string(), DomainKind::Package),
            ("package-1".to_string(), DomainKind::Package),
        ]
    );
    assert_eq!(read(&src), [10_000, 20_000]);
    assert_eq!(src.domains()[0].max_raw, u64::MAX);
    assert!(noted(&src, &["4 per-core counters left out"]));

    let with_rapl = HwmonOptions {
        rapl_packages: true,
        ..gpus_on()
    };
    let src = HwmonSource::discover(Some(&f.root), &with_rapl);
    assert!(src.domains().is_empty());
    assert!(noted(&src, &["hwmon0 (amd_energy)", "counted once"]));
}

#[test]
fn other_power_sensors_are_listed_not_counted() {
    let mut f = FakeHwmon::new();
    let psu = f.device("platform/corsair-psu.0", "corsairpsu");
    write(&psu, "power1_input", 300_000_000);
    let cpu = f.device("platform/coretemp.0", "coretemp");
    write(&cpu, "temp1_input", 50_000);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert!(src.domains().is_empty());
    assert_eq!(
        src.notes(),
        ["hwmon0 (corsairpsu) has power sensors carbonfast does not place; not counted"]
    );
}

#[test]
fn garbage_in_a_sensor_is_a_problem_naming_the_file_and_the_rest_is_read() {
    let mut f = FakeHwmon::new();
    f.intel("0000:03:00.0", "xe", &[("card", 7), ("pkg", 5)]);
    write(&f.root.join("hwmon0"), "energy2_input", "lots");
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    assert_eq!(
        found(&src),
        [("gpu-0000:03:00.0".to_string(), DomainKind::Gpu)]
    );
    match src.problems() {
        [Error::Malformed { path, detail }] => {
            assert!(path.ends_with("hwmon0/energy2_input"), "{path:?}");
            assert!(detail.contains("lots"), "{detail}");
        }
        other => panic!("expected one Malformed problem, got {other:?}"),
    }
}

#[test]
fn a_sensor_broken_after_discovery_fails_the_read_naming_it() {
    let mut f = FakeHwmon::new();
    let hw = f.power_meter("ACPI000D:00", 400_000_000, None);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    write(&hw, "device/power1_average", "n/a");
    let mut raw = vec![0; 1];
    match src.read_raw(&mut raw) {
        Err(Error::Malformed { path, .. }) => assert!(path.ends_with("power1_average")),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn a_fifo_planted_as_a_sensor_or_a_label_does_not_hang_discovery() {
    let mut f = FakeHwmon::new();
    let hw = f.intel("0000:03:00.0", "xe", &[("card", 7)]);
    fs::remove_file(hw.join("energy1_input")).unwrap();
    mkfifo(&hw.join("energy1_input"));
    let meter = f.power_meter("ACPI000D:00", 400_000_000, None);
    mkfifo(&meter.join("device/power1_oem_info"));
    let root = f.root.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let src = HwmonSource::discover(Some(&root), &gpus_on());
        tx.send((found(&src), src.problems().len())).unwrap();
    });
    let (domains, problems) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("discovery hung on a FIFO");
    // The meter's label was a FIFO, so it is taken as absent: a plain platform meter.
    assert_eq!(domains, [("platform-0".to_string(), DomainKind::Platform)]);
    assert_eq!(problems, 1);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// As root, runs `test` again in a child process that file modes apply to (under setpriv,
/// without the capabilities that bypass them), on the tree at `root`, and returns its output.
/// None when not root: file modes apply to this process already.
fn without_dac_override(test: &str, root: &Path) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let caps = "-dac_override,-dac_read_search";
    let out = std::process::Command::new("setpriv")
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--bounding-set={caps}"))
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("CARBONFAST_TEST_HWMON_ROOT", root)
        .output()
        .ok()?;
    Some(out)
}

#[test]
fn permission_denied_is_a_problem_whose_fix_opens_the_file_to_a_group() {
    const TEST: &str = "permission_denied_is_a_problem_whose_fix_opens_the_file_to_a_group";
    let mut f = FakeHwmon::new();
    let root = match std::env::var_os("CARBONFAST_TEST_HWMON_ROOT") {
        // The unprivileged run: the tree was made by the privileged one.
        Some(root) => PathBuf::from(root),
        None => {
            let hw = f.amd_energy(0, &[10_000, 20_000]);
            // The child keeps uid 0, the files' owner: no bit at all is what denies it.
            fs::set_permissions(hw.join("energy1_input"), fs::Permissions::from_mode(0o000))
                .unwrap();
            if let Some(out) = without_dac_override(TEST, &f.root) {
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                if text.contains("setpriv:") {
                    eprintln!("skipped: setpriv cannot drop capabilities here: {text}");
                    return;
                }
                assert!(out.status.success(), "{text}");
                assert!(text.contains("1 passed"), "{text}");
                return;
            }
            f.root.clone()
        }
    };
    let src = HwmonSource::discover(Some(&root), &gpus_on());
    // Socket 1 is measured; socket 0 is a problem with its fix, and unreadable.
    assert_eq!(
        found(&src),
        [("package-1".to_string(), DomainKind::Package)]
    );
    match src.problems() {
        [Error::PermissionDenied { path, fix }] => {
            assert!(path.ends_with("hwmon0/energy1_input"), "{path:?}");
            let file = path.display().to_string();
            assert!(fix.contains(&format!("sudo chgrp power {file} && sudo chmod g+r {file}")));
            assert!(fix.contains("ATTR{name}==\"amd_energy\""));
            assert!(fix.contains("/bin/chmod 0440 /sys%p/energy1_input"));
            assert!(!fix.contains("setcap") && !fix.contains("a+r") && !fix.contains("o+r"));
        }
        other => panic!("expected one PermissionDenied problem, got {other:?}"),
    }
    assert_eq!(src.unreadable().len(), 1);
    assert_eq!(src.unreadable()[0].name, "package-0");
}

fn discover(powercap: &FakePowercap, hwmon: &Path, estimate: bool) -> Meter {
    Meter::discover(&DiscoverConfig {
        rapl: RaplPath::Auto,
        roots: RaplRoots {
            powercap: Some(powercap.root.clone()),
            msr: Some(hwmon.join("no-msr")),
            perf_pmu: Some(hwmon.join("no-perf")),
            ..RaplRoots::default()
        },
        hwmon_root: Some(hwmon.to_path_buf()),
        gpu: true,
        nvml_library: Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
        amdsmi_library: Some(PathBuf::from("/nonexistent/libamd_smi.so")),
        estimate: estimate.then(EstimateConfig::default),
        ..DiscoverConfig::default()
    })
    .unwrap()
}

fn rapl_server() -> FakePowercap {
    let p = FakePowercap::new();
    p.zone("intel-rapl:0", "package-0", 1_000, 262_143_328_850);
    p.zone("intel-rapl:0:0", "dram", 500, 262_143_328_850);
    p
}

#[test]
fn a_platform_meter_alone_is_the_total_with_everything_else_beside_it() {
    let rapl = rapl_server();
    let mut f = FakeHwmon::new();
    f.power_meter("ACPI000D:00", 400_000_000, None);
    f.intel("0000:03:00.0", "xe", &[("card", 7), ("pkg", 5)]);
    f.amdgpu("0000:04:00.0", 150_000_000);
    let meter = discover(&rapl, &f.root, false);
    let names: Vec<(&str, bool)> = meter
        .domains()
        .iter()
        .zip(meter.in_total())
        .map(|(d, &t)| (d.name.as_str(), t))
        .collect();
    assert_eq!(
        names,
        [
            ("package-0", false),
            ("dram-0", false),
            ("platform-0", true),
            ("gpu-0000:03:00.0", false),
            ("gpu-0000:03:00.0-pkg", false),
            ("gpu-0000:04:00.0", false),
        ]
    );
    let start = meter.read().unwrap();
    rapl.set("intel-rapl:0", 2_001_000);
    std::thread::sleep(Duration::from_millis(50));
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    let platform = w.joules[2];
    assert!(platform > 0.0);
    assert_eq!(w.total_j, Some(platform));
    // The package moved by 2 J and is reported, not added.
    assert_eq!(w.joules[0], 2.0);
}

#[test]
fn amd_energy_is_not_counted_beside_rapl_packages() {
    let rapl = rapl_server();
    let mut f = FakeHwmon::new();
    f.amd_energy(2, &[10_000]);
    let meter = discover(&rapl, &f.root, false);
    let names: Vec<&str> = meter.domains().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["package-0", "dram-0"]);
    let hwmon = meter
        .sources()
        .iter()
        .find(|s| s.name() == "hwmon")
        .unwrap();
    assert!(hwmon.notes().iter().any(|n| n.contains("counted once")));
}

#[test]
fn amd_energy_measures_packages_where_rapl_cannot_and_they_are_not_estimated_too() {
    // RAPL's package is unreadable and its psys is not; amd_energy's sockets are readable.
    let rapl = FakePowercap::new();
    rapl.zone("intel-rapl:0", "package-0", 1_000, 262_143_328_850);
    fs::write(rapl.root.join("intel-rapl:0/max_energy_range_uj"), "0\n").unwrap();
    rapl.zone("intel-rapl:1", "psys", 1_000, 262_143_328_850);
    let mut f = FakeHwmon::new();
    f.amd_energy(0, &[10_000]);
    let meter = discover(&rapl, &f.root, true);
    let package: Vec<(&str, bool)> = meter
        .domains()
        .iter()
        .filter(|d| d.kind == DomainKind::Package)
        .map(|d| (d.source, d.estimated()))
        .collect();
    assert_eq!(package, [("hwmon", false)]);
}

#[test]
fn grace_sockets_include_their_memory_so_none_is_estimated_beside_them() {
    let rapl = FakePowercap::new();
    let mut f = FakeHwmon::new();
    f.power_meter("ACPI000D:00", 250_000_000, Some("Grace Power Socket 0"));
    f.power_meter("ACPI000D:01", 150_000_000, Some("CPU Power Socket 0"));
    let meter = discover(&rapl, &f.root, true);
    let names: Vec<(&str, bool)> = meter
        .domains()
        .iter()
        .zip(meter.in_total())
        .map(|(d, &t)| (d.name.as_str(), t))
        .collect();
    assert_eq!(names, [("package-0", true), ("core-0", false)]);
}

#[test]
fn an_amd_energy_socket_that_cannot_be_read_is_estimated_beside_the_one_that_can() {
    let rapl = FakePowercap::new();
    let mut f = FakeHwmon::new();
    let hw = f.amd_energy(0, &[10_000, 20_000]);
    fs::remove_file(hw.join("energy1_input")).unwrap();
    mkfifo(&hw.join("energy1_input"));
    let meter = discover(&rapl, &f.root, true);
    let packages: Vec<(&str, &str, bool)> = meter
        .domains()
        .iter()
        .filter(|d| d.kind == DomainKind::Package)
        .map(|d| (d.name.as_str(), d.source, d.estimated()))
        .collect();
    assert_eq!(
        packages,
        [
            ("package-1", "hwmon", false),
            ("package-0", "estimate", true)
        ]
    );
}

#[test]
fn a_sensor_with_no_valid_reading_is_unknown_never_a_measured_zero() {
    // amdgpu answering 4.3 GW (or u64::MAX) from the start, and a Jetson rail at -5 V.
    for bad in ["4294967295000", "18446744073709551615"] {
        let mut f = FakeHwmon::new();
        let hw = f.amdgpu("0000:03:00.0", 40_000_000);
        let powercap = FakePowercap::new();
        let meter = discover(&powercap, &f.root, false);
        write(&hw, "power1_average", bad);
        let a = meter.read().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let w = meter.window(&a, &meter.read().unwrap());
        let d = meter
            .domains()
            .iter()
            .position(|d| d.kind == DomainKind::Gpu);
        let d = d.unwrap();
        // Held at its last plausible 40 W, and noted, once it has had one.
        assert!(!w.failed[d] && w.joules[d] > 0.0, "{bad}: {:?}", w.joules);
        assert!(meter.anomalies()[d].0 >= 1);
        // None at all: unknown, not 0 J.
        let mut f = FakeHwmon::new();
        let hw = f.amdgpu("0000:03:00.0", 40_000_000);
        let src = HwmonSource::discover(Some(&f.root), &gpus_on());
        write(&hw, "power1_average", bad);
        let meter = Meter::new(vec![Box::new(src)]).unwrap();
        let a = meter.read().unwrap();
        let w = meter.window(&a, &meter.read().unwrap());
        assert!(w.failed[0] && w.joules[0].is_nan(), "{bad}: {w:?}");
        assert_eq!(w.total_j, None);
        assert!(meter.failure(0).unwrap().contains("no plausible reading"));
    }
    let mut f = FakeHwmon::new();
    f.ina3221("1-0040", &[("VDD_IN", 5_080, 1_234, true)]);
    let src = HwmonSource::discover(Some(&f.root), &gpus_on());
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    write(&f.root.join("hwmon0"), "in1_input", -5000);
    let a = meter.read().unwrap();
    let w = meter.window(&a, &meter.read().unwrap());
    assert!(w.failed[0] && w.joules[0].is_nan(), "{w:?}");
    let why = meter.failure(0).unwrap();
    assert!(why.contains("in1_input") && why.contains("-5000"), "{why}");
}
