//! The AMD SMI source on a fake libamd_smi built from tests/fakes/fake_amdsmi.c.

mod common;

use carbonfast_core::source::amdsmi::AmdSmiSource;
use carbonfast_core::source::Source;
use carbonfast_core::{DomainKind, Error, Meter, Reading, Sampler, SamplerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The fake library, compiled once per test run.
fn built() -> &'static Path {
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LIB.get_or_init(|| common::library::compile("fake_amdsmi.c", "libamd_smi.so"))
        .1
}

/// A private copy of the fake library with its own state file.
struct FakeAmdSmi {
    dir: tempfile::TempDir,
}

impl FakeAmdSmi {
    fn new(state: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(built(), dir.path().join("libamd_smi.so")).unwrap();
        let f = FakeAmdSmi { dir };
        f.set(state);
        f
    }
    fn lib(&self) -> PathBuf {
        self.dir.path().join("libamd_smi.so")
    }
    fn set(&self, state: &str) {
        let tmp = self.dir.path().join("amdsmi_state.tmp");
        std::fs::write(&tmp, state).unwrap();
        std::fs::rename(tmp, self.dir.path().join("amdsmi_state")).unwrap();
    }
    fn discover(&self, visible: Option<&str>) -> AmdSmiSource {
        AmdSmiSource::discover_with(Some(&self.lib()), visible, false, None)
    }
    /// amdsmi_init calls of this copy not yet matched by a shut-down.
    fn live_inits(&self) -> i32 {
        // SAFETY: the fake's own test hook, fn() -> int; this loads the same copy (by path)
        // that the sources load, so it sees their state.
        unsafe {
            let lib = libloading::Library::new(self.lib()).unwrap();
            let f: libloading::Symbol<unsafe extern "C" fn() -> i32> =
                lib.get(b"fake_amdsmi_live_inits\0").unwrap();
            f()
        }
    }
}

const TWO_GPUS: &str = "\
gpu 0 name=MI300X uuid=aaaa1111-0000-1000-8000-000000000001 bdf=0000:03:00.0 power_w=300 cap_w=750
gpu 1 name=MI300X uuid=bbbb2222-0000-1000-8000-000000000002 bdf=0001:c3:1f.7 power_w=200 cap_w=750
";

fn names(src: &AmdSmiSource) -> Vec<String> {
    src.domains().iter().map(|d| d.name.clone()).collect()
}

#[test]
fn each_gpu_is_a_domain_named_apart_from_nvmls_with_its_model_and_address() {
    let fake = FakeAmdSmi::new(TWO_GPUS);
    let src = fake.discover(None);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(names(&src), vec!["gpu-amd-0", "gpu-amd-1"]);
    let d = &src.domains()[1];
    assert_eq!((d.kind, d.reading), (DomainKind::Gpu, Reading::Energy));
    assert_eq!(d.source, "amdsmi");
    assert_eq!(d.path, fake.lib());
    // Counts of the resolution AMD SMI reports, 15.259 uJ as a float.
    assert_eq!(d.units_per_joule, 1e6 / f64::from(15.259f32));
    // Every counter is read as 32 bits (see amdsmi.rs), and twice the cap bounds a step.
    assert_eq!(d.max_raw, u64::from(u32::MAX));
    assert_eq!(d.max_power_w, Some(1500.0));
    assert_eq!(
        d.label,
        "MI300X, bbbb2222-0000-1000-8000-000000000002, 0001:c3:1f.7, hip:1"
    );
    assert_eq!(src.pci_addresses(), vec!["0000:03:00.0", "0001:c3:1f.7"]);
    // A 1 ms refresh is seen at discovery.
    let period = d.update_period_ns.expect("measured") as f64 * 1e-6;
    assert!((0.5..5.0).contains(&period), "{period} ms");
}

#[test]
fn processors_that_are_not_amd_gpus_are_left_out() {
    let fake = FakeAmdSmi::new(
        "gpu 0 type=cpu\ngpu 1 name=MI250X uuid=u-1 bdf=0000:c1:00.0 power_w=100\n",
    );
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-amd-0"]);
    assert!(src.domains()[0]
        .label
        .starts_with("MI250X, u-1, 0000:c1:00.0"));
    assert_eq!(src.pci_addresses(), vec!["0000:c1:00.0"]);
}

#[test]
fn visible_devices_select_by_index_and_uuid_and_only_picks_among_them() {
    let fake = FakeAmdSmi::new(TWO_GPUS);
    let src = fake.discover(Some("1,0"));
    assert_eq!(names(&src), vec!["gpu-amd-1", "gpu-amd-0"]);
    assert!(src.domains()[0].label.ends_with("hip:0"));
    assert_eq!(src.pci_addresses(), vec!["0001:c3:1f.7", "0000:03:00.0"]);
    assert_eq!(
        names(&fake.discover(Some("GPU-bbbb2222"))),
        vec!["gpu-amd-1"]
    );
    // The list ends at an entry that names no GPU.
    let src = fake.discover(Some("0,9,1"));
    assert_eq!(names(&src), vec!["gpu-amd-0"]);
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("\"9\" names no AMD GPU")));
    let src = fake.discover(Some(""));
    assert!(src.domains().is_empty() && src.pci_addresses().is_empty());
    assert!(src.notes().iter().any(|n| n.contains("is empty")));
    // `only` counts among the visible GPUs, as HIP numbers them.
    let src = AmdSmiSource::discover_with(Some(&fake.lib()), Some("1,0"), false, Some(&[1]));
    assert_eq!(names(&src), vec!["gpu-amd-0"]);
    assert_eq!(src.pci_addresses(), vec!["0000:03:00.0"]);
    let src = AmdSmiSource::discover_with(Some(&fake.lib()), None, false, Some(&[1]));
    assert_eq!(names(&src), vec!["gpu-amd-1"]);
}

#[test]
fn gpus_follow_rocms_numbering_and_its_uuids_where_amd_smi_tells_them() {
    let state = "\
gpu 0 uuid=aaaa1111-0000-1000-8000-000000000001 hip_id=1 hip_uuid=GPU-00000000000000aa
gpu 1 uuid=bbbb2222-0000-1000-8000-000000000002 hip_id=0 hip_uuid=GPU-00000000000000bb
";
    let fake = FakeAmdSmi::new(state);
    let src = fake.discover(None);
    // Named by AMD SMI's index, ordered and labelled by HIP's.
    assert_eq!(names(&src), vec!["gpu-amd-1", "gpu-amd-0"]);
    assert!(src.domains()[0].label.ends_with("hip:0"));
    assert_eq!(names(&fake.discover(Some("0"))), vec!["gpu-amd-1"]);
    assert_eq!(
        names(&fake.discover(Some("GPU-00000000000000aa"))),
        vec!["gpu-amd-0"]
    );
    let src = AmdSmiSource::discover_with(Some(&fake.lib()), None, false, Some(&[0]));
    assert_eq!(names(&src), vec!["gpu-amd-1"]);
    // Before ROCm 6.4 AMD SMI does not tell: its own order is taken.
    let fake = FakeAmdSmi::new(&format!("version=24.6.1\n{state}"));
    assert_eq!(names(&fake.discover(None)), vec!["gpu-amd-0", "gpu-amd-1"]);
}

/// Energy between two reads against the fake's exact truth, power x time.
fn measure(fake: &FakeAmdSmi, secs: f64) -> (f64, f64, f64) {
    let src = fake.discover(None);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    let range_j = src.domains()[0].range_j();
    let meter = Arc::new(Meter::new(vec![Box::new(src)]).unwrap());
    // The sampler's guard reads often enough that no wrap is missed, as in any window.
    let sampler = Sampler::start(meter.clone(), &SamplerConfig::default()).unwrap();
    sampler.window_opened();
    let a = meter.read().unwrap();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = meter.read().unwrap();
    sampler.window_closed();
    let w = meter.window(&a, &b);
    (w.joules[0], w.duration_ns as f64 * 1e-9, range_j)
}

#[test]
fn energy_is_power_times_time_across_many_wraps_of_a_32_bit_counter() {
    // 2^32 counts of 0.01 uJ: a wrap every 42.9 J, every 0.29 s at 150 W.
    let fake = FakeAmdSmi::new(
        "gpu 0 power_w=150 cap_w=200 resolution_uj=0.01 modulus=4294967296 refresh_us=1\n",
    );
    let (joules, secs, range_j) = measure(&fake, 1.0);
    let truth = 150.0 * secs;
    assert!((range_j - 42.949_672_96).abs() < 1e-3, "{range_j}");
    assert!(joules > 3.0 * range_j, "{joules} J: no wraps seen");
    assert!(
        (joules - truth).abs() < 1e-3 * truth,
        "{joules} J vs {truth} J"
    );
}

#[test]
fn a_64_bit_counter_past_2_to_the_32_still_counts_exactly() {
    // An MI300's counter, far above 2^32 counts: read modulo 2^32, it loses nothing.
    let fake = FakeAmdSmi::new(
        "gpu 0 power_w=400 cap_w=750 start=987654321012 refresh_us=1 resolution_uj=15.259\n",
    );
    let (joules, secs, _) = measure(&fake, 0.3);
    let truth = 400.0 * secs;
    // Within one count of the counter and the reads' own spread.
    assert!(
        (joules - truth).abs() < 2e-3 * truth,
        "{joules} J vs {truth} J"
    );
}

#[test]
fn without_an_energy_counter_power_is_integrated_in_every_known_layout() {
    for version in ["26.1.0", "25.2.0", "24.6.1"] {
        let fake = FakeAmdSmi::new(&format!(
            "version={version}\ngpu 0 energy=not_supported power_w=250 cap_w=300\n"
        ));
        let src = fake.discover(None);
        assert!(src.problems().is_empty(), "{version}: {:?}", src.problems());
        let d = &src.domains()[0];
        assert_eq!(d.reading, Reading::PowerMilliwatts, "{version}");
        assert!(src
            .notes()
            .iter()
            .any(|n| n.contains("integrated from power")));
        let mut raw = [0u64];
        src.read_raw(&mut raw).unwrap();
        // 250 W, not a voltage or half of a 64-bit field read as watts.
        assert_eq!(raw[0], 250_000, "{version}");
    }
    let fake = FakeAmdSmi::new("gpu 0 energy=not_supported power_w=250 cap_w=300\n");
    let meter = Arc::new(Meter::new(vec![Box::new(fake.discover(None))]).unwrap());
    let sampler = Sampler::start(meter.clone(), &SamplerConfig::default()).unwrap();
    sampler.window_opened();
    let a = meter.read().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let b = meter.read().unwrap();
    sampler.window_closed();
    let w = meter.window(&a, &b);
    let truth = 250.0 * w.duration_ns as f64 * 1e-9;
    assert!(
        (w.joules[0] - truth).abs() < 1e-6 * truth,
        "{} vs {truth}",
        w.joules[0]
    );
}

#[test]
fn a_counter_the_driver_marks_unsupported_falls_back_to_power() {
    // Recent kernels fill the accumulator with UINT_MAX where the firmware's is not trusted.
    let fake = FakeAmdSmi::new("gpu 0 power_w=90 start=4294967295 modulus=4294967296\n");
    let src = fake.discover(None);
    assert_eq!(src.domains()[0].reading, Reading::PowerMilliwatts);
}

#[test]
fn an_older_power_layout_is_a_problem_not_a_misreading() {
    let fake = FakeAmdSmi::new("version=23.2.0\ngpu 0 energy=not_supported power_w=250\n");
    let src = fake.discover(None);
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { why, fix, .. }] => {
            assert!(why.contains("gpu-amd-0 has no energy counter"), "{why}");
            assert!(fix.contains("ROCm to 6.1"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // With the counter working, the layout does not matter.
    let fake = FakeAmdSmi::new("version=23.2.0\ngpu 0 power_w=250\n");
    assert_eq!(fake.discover(None).domains()[0].reading, Reading::Energy);
}

#[test]
fn power_only_integrates_power_even_beside_a_counter() {
    let fake = FakeAmdSmi::new("gpu 0 power_w=120\n");
    let src = AmdSmiSource::discover_with(Some(&fake.lib()), None, true, None);
    assert_eq!(src.domains()[0].reading, Reading::PowerMilliwatts);
    assert!(src.problems().is_empty());
}

#[test]
fn a_missing_library_is_a_fact_unless_the_user_named_it() {
    let named = AmdSmiSource::discover_with(
        Some(Path::new("/nonexistent/libamd_smi.so")),
        None,
        false,
        None,
    );
    assert!(named.domains().is_empty());
    match named.problems() {
        [Error::Missing { why, fix, .. }] => {
            assert!(why.contains("cannot load AMD SMI"));
            assert!(fix.contains("CARBONFAST_AMDSMI_LIBRARY"));
        }
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("libamd_smi.so");
    std::fs::write(&broken, b"not a library").unwrap();
    let src = AmdSmiSource::discover_with(Some(&broken), None, false, None);
    assert!(matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("cannot load")));

    let default = AmdSmiSource::discover_with(None, None, false, None);
    if !default.domains().is_empty() || !default.problems().is_empty() {
        return; // this machine has ROCm
    }
    assert!(default
        .notes()
        .iter()
        .any(|n| n.contains("no ROCm (libamd_smi.so not found)")));
}

#[test]
fn refused_access_is_a_permission_problem_with_the_group_fix() {
    let fake = FakeAmdSmi::new("init=no_perm\ngpu 0 power_w=10\n");
    let src = fake.discover(None);
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::PermissionDenied { fix, .. }] => {
            assert!(fix.contains("/dev/kfd") && fix.contains("renderD"), "{fix}");
            assert!(fix.contains("sudo usermod -aG render,video $USER"), "{fix}");
            assert!(!fix.contains("setcap") && !fix.contains("chmod"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // One GPU refused, another readable: the other still counts.
    let fake = FakeAmdSmi::new(
        "gpu 0 energy=no_perm power=no_perm power_w=10\ngpu 1 power_w=20 bdf=0000:04:00.0\n",
    );
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-amd-1"]);
    assert_eq!(src.pci_addresses(), vec!["0000:04:00.0"]);
    assert!(matches!(
        src.problems(),
        [Error::PermissionDenied { fix, .. }] if fix.contains("gpu-amd-0") && fix.contains("Permission Denied")
    ));
}

#[test]
fn a_driver_that_does_not_start_is_a_problem() {
    let fake = FakeAmdSmi::new("init=driver_not_loaded\n");
    let src = fake.discover(None);
    assert!(matches!(
        src.problems(),
        [Error::Missing { why, .. }] if why.contains("AMD SMI failed to start") && why.contains("driver not loaded")
    ));
}

#[test]
fn a_gpu_lost_after_start_is_unknown_with_its_name_and_the_other_kept() {
    let fake = FakeAmdSmi::new("gpu 0 power_w=50\ngpu 1 power_w=50\n");
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    let start = meter.read().unwrap();
    fake.set("gpu 0 power_w=50\ngpu 1 power_w=50 energy=lost\n");
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!(w.failed, vec![false, true]);
    assert!(w.joules[1].is_nan() && !w.joules[0].is_nan());
    assert_eq!(w.total_j, Some(w.joules[0]));
    assert_eq!(meter.failure(0), None);
    let why = meter.failure(1).expect("a reason");
    assert!(
        why.contains("gpu-amd-1 is lost") && why.contains("Device Not found"),
        "{why}"
    );
}

#[test]
fn a_gpu_lost_after_n_reads_answers_until_then() {
    let fake = FakeAmdSmi::new("gpu 0 power_w=50\n");
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    // From now on, three more reads succeed and the fourth finds the GPU gone.
    fake.set("gpu 0 power_w=50 lost_after=3\n");
    let first = meter.read().unwrap();
    let mut last = first.clone();
    for _ in 0..2 {
        last = meter.read().unwrap();
    }
    assert_eq!(meter.window(&first, &last).failed, vec![false]);
    let gone = meter.read().unwrap();
    assert_eq!(meter.window(&last, &gone).failed, vec![true]);
    assert!(meter.failure(0).unwrap().contains("gpu-amd-0"));
}

#[test]
fn sources_on_one_library_share_one_initialisation() {
    let fake = FakeAmdSmi::new("gpu 0 power_w=5\n");
    let a = fake.discover(None);
    let b = fake.discover(None);
    assert_eq!(fake.live_inits(), 1);
    drop(a);
    assert_eq!(fake.live_inits(), 1);
    let mut raw = [0u64];
    b.read_raw(&mut raw).unwrap();
    drop(b);
    assert_eq!(fake.live_inits(), 0);
}

#[test]
fn slow_energy_reads_happen_off_the_edge() {
    let fake = FakeAmdSmi::new("gpu 0 power_w=5 delay_us=2000\n");
    let src = fake.discover(None);
    assert!(src.slow());
    assert!(src.notes().iter().any(|n| n.contains("background thread")));
    let fast = FakeAmdSmi::new("gpu 0 power_w=5\n").discover(None);
    assert!(!fast.slow());
}

// ---- A library that hangs or reports garbage ----

use common::deadline::finishes_within;
use std::time::Instant;

#[test]
fn implausible_socket_and_processor_counts_are_bounded_and_noted() {
    let fake = FakeAmdSmi::new(&format!("count=1073741824\n{TWO_GPUS}"));
    let lib = fake.lib();
    let src = finishes_within(60, "discovery", move || {
        AmdSmiSource::discover_with(Some(&lib), None, false, None)
    });
    assert_eq!(names(&src), vec!["gpu-amd-0", "gpu-amd-1"]);
    let details: Vec<&str> = src
        .problems()
        .iter()
        .map(|e| match e {
            Error::Malformed { detail, .. } => detail.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    // The socket count once, each socket's processor count once.
    assert_eq!(details.len(), 3, "{details:?}");
    for d in &details {
        assert!(d.contains("AMD SMI") && d.contains("1073741824"), "{d}");
    }
    assert!(details[0].contains("amdsmi_get_socket_handles"));
    assert!(details[1].contains("amdsmi_get_processor_handles"));
}

#[test]
fn a_library_that_never_answers_is_given_up_after_a_deadline() {
    let fake = FakeAmdSmi::new(&format!("init_hang=1\n{TWO_GPUS}"));
    let lib = fake.lib();
    let t = Instant::now();
    let src = finishes_within(30, "discovery", move || {
        AmdSmiSource::discover_with(Some(&lib), None, false, None)
    });
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(src.domains().is_empty() && src.pci_addresses().is_empty());
    match src.problems() {
        [Error::Missing { why, fix, .. }] => {
            assert!(
                why.contains("AMD SMI") && why.contains("did not answer within 5 s"),
                "{why}"
            );
            assert!(fix.contains("CARBONFAST_VENDOR_TIMEOUT_S"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // The stuck library holds up no other: another copy is found as usual.
    let other = FakeAmdSmi::new(TWO_GPUS);
    let lib = other.lib();
    let src = finishes_within(10, "discovery of another library", move || {
        AmdSmiSource::discover_with(Some(&lib), None, false, None)
    });
    assert_eq!(names(&src), vec!["gpu-amd-0", "gpu-amd-1"]);
}

#[test]
fn a_shut_down_that_never_returns_does_not_hold_up_the_drop() {
    let fake = FakeAmdSmi::new(TWO_GPUS);
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-amd-0", "gpu-amd-1"]);
    fake.set(&format!("shutdown_hang=1\n{TWO_GPUS}"));
    let waited = finishes_within(10, "dropping the source", move || {
        let t = Instant::now();
        drop(src);
        t.elapsed()
    });
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn names_are_read_within_their_buffer_and_rid_of_control_characters() {
    let fake = FakeAmdSmi::new("gpu 0 name=MI300X uuid=u-1 strings=control power_w=5\n");
    let src = fake.discover(None);
    let label = &src.domains()[0].label;
    assert!(!label.chars().any(char::is_control), "{label:?}");
    assert!(
        label.starts_with(
            "\u{FFFD}[2J\u{FFFD}]0;MI300X\u{FFFD}\u{FFFD}MI300X, \
             \u{FFFD}[2J\u{FFFD}]0;u-1\u{FFFD}\u{FFFD}u-1, 0000:03:00.0"
        ),
        "{label:?}"
    );

    let fake = FakeAmdSmi::new("gpu 0 name=MI300X uuid=u-1 strings=unterminated power_w=5\n");
    let src = fake.discover(None);
    let label = &src.domains()[0].label;
    assert!(!label.chars().any(char::is_control), "{label:?}");
    let parts: Vec<&str> = label.split(", ").collect();
    // The name fills its 256 bytes, the UUID its buffer, and nothing past them is read.
    assert_eq!(parts[0], &"MI300X".repeat(43)[..256]);
    assert!(
        parts[1].len() < 256 && parts[1].starts_with("u-1u-1"),
        "{}",
        parts[1]
    );
    assert!(parts[1].chars().all(|c| "u-1".contains(c)), "{}", parts[1]);
}

// ---- Whose energy: the processes on a GPU ----

const ONE_GPU: &str = "gpu 0 name=MI300X power_w=300\n";

fn now_ns() -> u64 {
    carbonfast_core::clock::monotonic_ns()
}

#[test]
fn two_processes_split_it_by_their_engine_time_since_an_earlier_look() {
    let fake = FakeAmdSmi::new(&format!(
        "{ONE_GPU}proc 0 pid=100 busy=60 gfx_ns=5000000000\nproc 0 pid=200 busy=20\n"
    ));
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    // A look at the window's start; before any, the processes are known but not their use.
    let first = meter.gpu_shares(&[100], 0).remove(0).unwrap();
    assert!(first.method.starts_with("no samples"), "{}", first.method);
    let start = now_ns();
    std::thread::sleep(Duration::from_millis(400));
    let s = meter.gpu_shares(&[100], start).remove(0).unwrap();
    // The 5 s pid 100 used before the window are not counted: 60% against 20%.
    assert!((s.share - 0.75).abs() < 0.01, "{s:?}");
    assert!(s.low <= s.share && s.share <= s.high, "{s:?}");
    assert!(s.method.starts_with("SM utilisation:"), "{}", s.method);
    assert!(s.method.ends_with("of 2 processes"), "{}", s.method);
}

#[test]
fn a_scope_alone_on_an_amd_gpu_has_all_of_it() {
    let fake = FakeAmdSmi::new(&format!("{ONE_GPU}proc 0 pid=100 busy=90\n"));
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    let s = meter.gpu_shares(&[100], now_ns()).remove(0).unwrap();
    assert_eq!((s.share, s.low, s.high), (1.0, 1.0, 1.0));
    assert_eq!(s.method, "the only compute process on it");
}

#[test]
fn an_amd_process_list_of_2_to_the_30_is_bounded() {
    let fake = FakeAmdSmi::new(&format!(
        "proc_count=1073741824\n{ONE_GPU}proc 0 pid=100 busy=10\nproc 0 pid=200 busy=10\n"
    ));
    let lib = fake.lib();
    let procs = common::deadline::finishes_within(30, "the process list", move || {
        let src = AmdSmiSource::discover_with(Some(&lib), None, false, None);
        src.gpu_processes(0, 0).expect("a list")
    });
    let mut pids: Vec<u32> = procs.processes.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    assert_eq!(pids, vec![100, 200]);
    assert!(!procs.complete);
}

#[test]
fn processes_are_not_read_where_the_layout_or_the_call_is_unknown() {
    // Library 24 laid amdsmi_proc_info_t out otherwise: nothing is misread.
    let fake = FakeAmdSmi::new(&format!(
        "version=24.7.1\n{ONE_GPU}proc 0 pid=100 busy=90\n"
    ));
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-amd-0"]);
    assert!(src.gpu_processes(0, 0).is_none());
    // A library without the call.
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let old = &LIB
        .get_or_init(|| {
            common::library::compile_with(
                "fake_amdsmi.c",
                "libamd_smi.so",
                &["-DFAKE_AMDSMI_NO_PROCESSES"],
            )
        })
        .1;
    std::fs::write(
        old.parent().unwrap().join("amdsmi_state"),
        format!("{ONE_GPU}proc 0 pid=100 busy=90\n"),
    )
    .unwrap();
    let src = AmdSmiSource::discover_with(Some(old), None, false, None);
    assert_eq!(names(&src), vec!["gpu-amd-0"]);
    assert!(src.gpu_processes(0, 0).is_none());
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    assert_eq!(meter.gpu_shares(&[100], 0), vec![None]);
}
