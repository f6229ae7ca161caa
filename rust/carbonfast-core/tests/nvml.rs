//! The NVML source on a fake libnvidia-ml built from tests/fakes/fake_nvml.c.

mod common;

use carbonfast_core::source::nvml::NvmlSource;
use carbonfast_core::source::Source;
use carbonfast_core::{DomainKind, Error, Meter, Reading, Sampler, SamplerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The fake library, compiled once per test run.
fn built() -> &'static Path {
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LIB.get_or_init(|| common::library::compile("fake_nvml.c", "libnvidia-ml.so.1"))
        .1
}

/// A private copy of the fake library with its own state file.
struct FakeNvml {
    dir: tempfile::TempDir,
}

impl FakeNvml {
    fn new(state: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(built(), dir.path().join("libnvidia-ml.so.1")).unwrap();
        let f = FakeNvml { dir };
        f.set(state);
        f
    }
    fn lib(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so.1")
    }
    fn set(&self, state: &str) {
        std::fs::write(self.dir.path().join("nvml_state"), state).unwrap();
    }
    fn discover(&self, visible: Option<&str>) -> NvmlSource {
        NvmlSource::discover_with(Some(&self.lib()), visible, false)
    }
}

const TWO_GPUS: &str = "\
gpu 0 name=H100 uuid=GPU-aaaa-1111 energy_mj=1000 power_mw=300000
gpu 1 name=H100 uuid=GPU-bbbb-2222 energy_mj=5000 power_mw=200000
";

fn names(src: &NvmlSource) -> Vec<String> {
    src.domains().iter().map(|d| d.name.clone()).collect()
}

#[test]
fn each_gpu_is_a_domain_read_from_its_energy_counter() {
    let fake = FakeNvml::new(TWO_GPUS);
    let src = fake.discover(None);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    assert_eq!(names(&src), vec!["gpu-0", "gpu-1"]);
    let d = &src.domains()[1];
    assert_eq!(
        (d.kind, d.reading, d.units_per_joule),
        (DomainKind::Gpu, Reading::Energy, 1e3)
    );
    assert_eq!(d.label, "H100, GPU-bbbb-2222, cuda:1");
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let a = meter.read().unwrap();
    fake.set(&TWO_GPUS.replace("energy_mj=1000", "energy_mj=1750"));
    let b = meter.read().unwrap();
    let w = meter.window(&a, &b);
    assert_eq!(w.joules, vec![0.75, 0.0]);
    assert_eq!(w.total_j, Some(0.75));
}

#[test]
fn the_counters_update_period_is_measured() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy_mj=0 tick_ms=20 tick_mj=100\n");
    let src = fake.discover(None);
    let period = src.domains()[0].update_period_ns.expect("measured") as f64 * 1e-6;
    assert!((15.0..30.0).contains(&period), "{period} ms");
}

#[test]
fn without_a_counter_power_is_integrated() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy=not_supported power_mw=250000\n");
    let src = fake.discover(None);
    let d = &src.domains()[0];
    assert_eq!(d.reading, Reading::PowerMilliwatts);
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("integrated from power")));
    let meter = Arc::new(Meter::new(vec![Box::new(src)]).unwrap());
    // The guard reads power every 20 ms while a window is open.
    let sampler = Sampler::start(meter.clone(), &SamplerConfig::default()).unwrap();
    sampler.window_opened();
    let a = meter.read().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let b = meter.read().unwrap();
    sampler.window_closed();
    let w = meter.window(&a, &b);
    let truth = 250.0 * w.duration_ns as f64 * 1e-9;
    assert!(
        (w.joules[0] - truth).abs() < 1e-6 * truth.max(1.0),
        "{} vs {truth}",
        w.joules[0]
    );
    assert!(sampler.stats().samples >= 5);
}

#[test]
fn the_power_field_is_preferred_to_power_usage() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy=not_supported power_mw=100000\n");
    let src = fake.discover(None);
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("instantaneous power field")));
    let fake =
        FakeNvml::new("gpu 0 uuid=GPU-1 energy=not_supported field=not_supported power_mw=1\n");
    let src = fake.discover(None);
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("nvmlDeviceGetPowerUsage")));
}

#[test]
fn neither_energy_nor_power_falls_back_to_an_estimate_with_a_range() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy=not_supported power=not_supported limit_mw=400000 util=50\n",
    );
    let src = fake.discover(None);
    let d = &src.domains()[0];
    assert!(d.estimated());
    assert!(d
        .estimate
        .as_ref()
        .unwrap()
        .method
        .contains("power limit x GPU utilisation"));
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    let a = meter.read().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let b = meter.read().unwrap();
    let w = meter.window(&a, &b);
    let secs = w.duration_ns as f64 * 1e-9;
    // 400 W x 50% = 200 W; low half of that, high 400 x (0.15 + 0.85 x 0.5) = 230 W.
    assert!(
        (w.joules[0] / secs - 200.0).abs() < 5.0,
        "{} W",
        w.joules[0] / secs
    );
    assert!((w.joules_low[0] / secs - 100.0).abs() < 3.0);
    assert!((w.joules_high[0] / secs - 230.0).abs() < 6.0);
}

#[test]
fn cuda_visible_devices_selects_by_index_and_uuid_prefix() {
    let fake = FakeNvml::new(TWO_GPUS);
    assert_eq!(names(&fake.discover(Some("1"))), vec!["gpu-1"]);
    let src = fake.discover(Some("GPU-bbbb,0"));
    assert_eq!(names(&src), vec!["gpu-1", "gpu-0"]);
    assert_eq!(src.domains()[0].label, "H100, GPU-bbbb-2222, cuda:0");
    // Like CUDA: entries after one that names no GPU are ignored.
    let src = fake.discover(Some("0,7,1"));
    assert_eq!(names(&src), vec!["gpu-0"]);
    assert!(src.notes().iter().any(|n| n.contains("\"7\" names no GPU")));
    let src = fake.discover(Some(""));
    assert!(src.domains().is_empty());
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("CUDA_VISIBLE_DEVICES is empty")));
}

#[test]
fn a_mig_instance_is_measured_at_its_parent_gpu() {
    let fake = FakeNvml::new(&TWO_GPUS.replace("GPU-bbbb-2222", "GPU-bbbb-2222 mig_uuid=MIG-x1"));
    let src = fake.discover(Some("MIG-x1"));
    assert_eq!(names(&src), vec!["gpu-1"]);
    assert!(src
        .notes()
        .iter()
        .any(|n| n.contains("MIG-x1 is a MIG instance of gpu-1")));
}

#[test]
fn gpu_errors_are_problems_with_reasons_and_other_gpus_still_count() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy=no_permission power=no_permission\n\
         gpu 1 uuid=GPU-2 energy=gpu_lost power=gpu_lost\n\
         gpu 2 uuid=GPU-3 energy_mj=7\n",
    );
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-2"]);
    match src.problems() {
        [Error::PermissionDenied { fix, .. }, Error::Missing { why, .. }] => {
            assert!(fix.contains("gpu-0") && fix.contains("Insufficient Permissions"));
            assert!(why.contains("gpu-1 is lost"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gpu_lost_after_start_is_unknown_with_its_name() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy_mj=7\n");
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    let start = meter.read().unwrap();
    fake.set("gpu 0 uuid=GPU-1 energy=gpu_lost\n");
    let end = meter.read().unwrap();
    let w = meter.window(&start, &end);
    assert_eq!((w.failed[0], w.total_j), (true, None));
    let why = meter.failure(0).expect("a reason");
    assert!(why.contains("gpu-0 is lost"), "{why}");
}

#[test]
fn a_driver_that_does_not_start_is_a_problem() {
    let fake = FakeNvml::new("init=driver_not_loaded\n");
    let src = fake.discover(None);
    assert!(src.domains().is_empty());
    assert!(
        matches!(src.problems(), [Error::Missing { why, .. }] if why.contains("Driver Not Loaded"))
    );
}

#[test]
fn a_missing_library_is_a_fact_unless_the_user_named_it() {
    let named = NvmlSource::discover_with(
        Some(Path::new("/nonexistent/libnvidia-ml.so.1")),
        None,
        false,
    );
    assert!(matches!(named.problems(), [Error::Missing { .. }]));
    assert!(named.domains().is_empty());
}

#[test]
fn power_only_integrates_power_even_beside_a_counter() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy_mj=5 power_mw=1000\n");
    let src = NvmlSource::discover_with(Some(&fake.lib()), None, true);
    assert_eq!(src.domains()[0].reading, Reading::PowerMilliwatts);
}

#[test]
fn slow_energy_reads_happen_off_the_edge_and_still_count_exactly() {
    use carbonfast_core::Deferred;
    use std::time::Instant;

    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy_mj=1000 delay_us=20000\n");
    let src = fake.discover(None);
    assert!(src.slow());
    assert!(src.notes().iter().any(|n| n.contains("background thread")));
    let meter = Arc::new(Meter::new(vec![Box::new(src)]).unwrap());
    let deferred = Deferred::new(meter.clone()).expect("a slow source");

    let t = Instant::now();
    let a = deferred.read().unwrap();
    let opened = t.elapsed();
    fake.set("gpu 0 uuid=GPU-1 energy_mj=1000 delay_us=20000\n");
    // The first read is still in flight; the counter moves after it was taken.
    std::thread::sleep(Duration::from_millis(60));
    fake.set("gpu 0 uuid=GPU-1 energy_mj=4500 delay_us=20000\n");
    let t = Instant::now();
    let b = deferred.read().unwrap();
    let closed = t.elapsed();
    assert!(
        opened < Duration::from_millis(5),
        "the edge waited {opened:?}"
    );
    assert!(
        closed < Duration::from_millis(5),
        "the edge waited {closed:?}"
    );
    let w = meter.window(a.resolve(&meter).unwrap(), b.resolve(&meter).unwrap());
    assert_eq!(w.joules, vec![3.5]);

    // Edges queued back to back resolve in order.
    let edges: Vec<_> = (0..5).map(|_| deferred.read().unwrap()).collect();
    let totals: Vec<u64> = edges
        .iter()
        .map(|e| e.resolve(&meter).unwrap().totals[0])
        .collect();
    assert!(totals.windows(2).all(|p| p[0] <= p[1]), "{totals:?}");
}

#[test]
fn a_fast_meter_needs_no_background_reader() {
    let fake = FakeNvml::new("gpu 0 uuid=GPU-1 energy_mj=5\n");
    let meter = Arc::new(Meter::new(vec![Box::new(fake.discover(None))]).unwrap());
    assert!(carbonfast_core::Deferred::new(meter).is_none());
}

#[test]
fn only_the_chosen_cuda_indices_are_measured_under_their_own_names() {
    let fake = FakeNvml::new(TWO_GPUS);
    let src = NvmlSource::discover_selected(Some(&fake.lib()), None, false, Some(&[1]));
    assert_eq!(names(&src), vec!["gpu-1"]);
    assert_eq!(src.domains()[0].label, "H100, GPU-bbbb-2222, cuda:1");
    // Indices count among the visible devices, as CUDA's do.
    let src = NvmlSource::discover_selected(Some(&fake.lib()), Some("1,0"), false, Some(&[0]));
    assert_eq!(names(&src), vec!["gpu-1"]);
    let none = NvmlSource::discover_selected(Some(&fake.lib()), None, false, Some(&[5]));
    assert!(names(&none).is_empty());
}

// ---- A library that hangs or reports garbage ----

use common::deadline::finishes_within;
use std::time::Instant;

#[test]
fn an_implausible_device_count_is_bounded_and_noted() {
    let fake = FakeNvml::new(&format!("count=1073741824\n{TWO_GPUS}"));
    let lib = fake.lib();
    let src = finishes_within(60, "discovery", move || {
        NvmlSource::discover_with(Some(&lib), None, false)
    });
    // The GPUs that answer are still measured; the count itself is a problem.
    assert_eq!(names(&src), vec!["gpu-0", "gpu-1"]);
    match src.problems() {
        [Error::Malformed { detail, .. }] => {
            assert!(detail.contains("NVML"), "{detail}");
            assert!(detail.contains("1073741824"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_driver_that_never_answers_is_given_up_after_a_deadline() {
    let fake = FakeNvml::new(&format!("init_hang=1\n{TWO_GPUS}"));
    let lib = fake.lib();
    let t = Instant::now();
    let src = finishes_within(30, "discovery", move || {
        NvmlSource::discover_with(Some(&lib), None, false)
    });
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(src.domains().is_empty());
    match src.problems() {
        [Error::Missing { why, fix, .. }] => {
            assert!(
                why.contains("NVML") && why.contains("did not answer within 5 s"),
                "{why}"
            );
            assert!(fix.contains("CARBONFAST_VENDOR_TIMEOUT_S"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // A source with nothing to read reads nothing, at once.
    let mut raw: [u64; 0] = [];
    src.read_raw(&mut raw).unwrap();
}

#[test]
fn a_shutdown_that_never_returns_does_not_hold_up_the_drop() {
    let fake = FakeNvml::new(TWO_GPUS);
    let src = fake.discover(None);
    assert_eq!(names(&src), vec!["gpu-0", "gpu-1"]);
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
    let fake = FakeNvml::new("gpu 0 name=H100 uuid=GPU-aaaa strings=unterminated energy_mj=1\n");
    let src = fake.discover(None);
    // NVML's buffers are 96 bytes: the name and UUID fill them, and nothing past them is read.
    let (name, uuid) = ("H100".repeat(24), "GPU-aaaa".repeat(12));
    assert_eq!(src.domains()[0].label, format!("{name}, {uuid}, cuda:0"));
    // The UUID still selects its GPU.
    assert_eq!(names(&fake.discover(Some("GPU-aaaa"))), vec!["gpu-0"]);

    let fake = FakeNvml::new("gpu 0 name=H100 uuid=GPU-aaaa strings=control energy_mj=1\n");
    let src = fake.discover(None);
    let label = &src.domains()[0].label;
    assert!(!label.chars().any(char::is_control), "{label:?}");
    assert_eq!(
        label,
        "\u{FFFD}[2J\u{FFFD}]0;H100\u{FFFD}\u{FFFD}H100, \
         \u{FFFD}[2J\u{FFFD}]0;GPU-aaaa\u{FFFD}\u{FFFD}GPU-aaaa, cuda:0"
    );
}

// ---- Whose energy: the processes on a GPU ----

fn shares(fake: &FakeNvml, pids: &[u32]) -> Vec<Option<carbonfast_core::GpuShare>> {
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    let since = carbonfast_core::clock::monotonic_ns().saturating_sub(60_000_000_000);
    meter.gpu_shares(pids, since)
}

#[test]
fn two_processes_on_a_gpu_split_it_by_their_sm_samples() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy_mj=5\n\
         proc 0 pid=100 sm=60 samples=30\n\
         proc 0 pid=200 sm=20 samples=30\n",
    );
    let s = shares(&fake, &[100]).remove(0).expect("a share");
    assert!((s.share - 0.75).abs() < 1e-12, "{s:?}");
    assert!(s.low <= s.share && s.share <= s.high, "{s:?}");
    assert!(s.low > 0.6 && s.high < 0.9, "{s:?}");
    assert_eq!(s.method, "SM utilisation: 60 samples of 2 processes");
    // The other scope has the rest.
    let t = shares(&fake, &[200]).remove(0).unwrap();
    assert!((s.share + t.share - 1.0).abs() < 1e-12);
}

#[test]
fn samples_before_the_time_asked_do_not_count() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy_mj=5\n\
         sample_us=1000000\n\
         proc 0 pid=100 sm=50 samples=10\n\
         proc 0 pid=200 sm=50 samples=1\n",
    );
    let meter = Meter::new(vec![Box::new(fake.discover(None))]).unwrap();
    // Samples are 1 s apart, the newest half a second ago: the last 2 s hold two of pid 100's.
    let since = carbonfast_core::clock::monotonic_ns() - 2_000_000_000;
    let s = meter.gpu_shares(&[100], since).remove(0).unwrap();
    assert_eq!(s.method, "SM utilisation: 3 samples of 2 processes");
    assert!((s.share - 2.0 / 3.0).abs() < 1e-12, "{s:?}");
}

#[test]
fn a_scope_alone_on_a_gpu_has_all_of_it() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy_mj=5\n\
         gpu 1 uuid=GPU-2 energy_mj=5\n\
         proc 0 pid=100 sm=90 samples=5\n\
         proc 1 pid=300\n",
    );
    let all = shares(&fake, &[100, 101]);
    let s = all[0].as_ref().unwrap();
    assert_eq!((s.share, s.low, s.high), (1.0, 1.0, 1.0));
    assert_eq!(s.method, "the only compute process on it");
    // On the other GPU, the scope has nothing; another's process has it all.
    let t = all[1].as_ref().unwrap();
    assert_eq!(t.share, 0.0);
}

#[test]
fn without_samples_the_processes_split_it_evenly_within_0_to_1() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy_mj=5\n\
         proc 0 pid=100\n\
         proc 0 pid=200\n",
    );
    let s = shares(&fake, &[100]).remove(0).unwrap();
    assert_eq!((s.share, s.low, s.high), (0.5, 0.0, 1.0));
    assert_eq!(
        s.method,
        "no samples: split by process count (1 of 2), range 0..1"
    );
    // A driver that offers no process calls at all for this GPU: nothing known.
    fake.set("gpu 0 uuid=GPU-1 energy_mj=5\nprocs=not_supported\n");
    assert_eq!(shares(&fake, &[100]), vec![None]);
}

#[test]
fn a_process_list_of_2_to_the_30_is_bounded() {
    let fake = FakeNvml::new(
        "gpu 0 uuid=GPU-1 energy_mj=5\n\
         proc_count=1073741824\n\
         proc 0 pid=100\n",
    );
    let lib = fake.lib();
    let (procs, s) = finishes_within(30, "the process list", move || {
        let src = NvmlSource::discover_with(Some(&lib), None, false);
        let procs = src.gpu_processes(0, 0).expect("a list");
        let meter = Meter::new(vec![Box::new(src)]).unwrap();
        (procs, meter.gpu_shares(&[100], 0).remove(0).unwrap())
    });
    // What NVML wrote is read; the count it claimed makes the list incomplete.
    assert_eq!(procs.processes.len(), 1);
    assert!(!procs.complete);
    assert_eq!((s.share, s.low, s.high), (1.0, 0.0, 1.0));
    assert!(s.method.contains("cut short"), "{}", s.method);
}

#[test]
fn a_library_without_the_process_calls_knows_no_processes() {
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let old = &LIB
        .get_or_init(|| {
            common::library::compile_with(
                "fake_nvml.c",
                "libnvidia-ml.so.1",
                &["-DFAKE_NVML_NO_PROCESSES"],
            )
        })
        .1;
    let dir = old.parent().unwrap();
    std::fs::write(
        dir.join("nvml_state"),
        "gpu 0 uuid=GPU-1 energy_mj=5\nproc 0 pid=100 sm=50\n",
    )
    .unwrap();
    let src = NvmlSource::discover_with(Some(old), None, false);
    assert_eq!(names(&src), vec!["gpu-0"]);
    assert!(src.gpu_processes(0, 0).is_none());
    assert!(src.gpu_processes(7, 0).is_none());
    let meter = Meter::new(vec![Box::new(src)]).unwrap();
    assert_eq!(meter.gpu_shares(&[100], 0), vec![None]);
}
