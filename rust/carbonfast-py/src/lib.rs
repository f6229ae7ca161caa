//! Python bindings of carbonfast-core: conversions, GIL release and error mapping only.

mod attribution;
mod tally;

use carbonfast_core as core;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::Arc;

create_exception!(
    carbonfast,
    SensorUnavailable,
    PyOSError,
    "An energy sensor is missing or cannot be read."
);

/// The one place where core errors become Python exceptions.
pub(crate) fn to_py(e: core::Error) -> PyErr {
    let msg = match e.fix() {
        Some(fix) => format!("{e}. Fix: {fix}"),
        None => e.to_string(),
    };
    match e {
        core::Error::PermissionDenied { .. } => PyPermissionError::new_err(msg),
        core::Error::Missing { .. } | core::Error::Malformed { .. } => {
            SensorUnavailable::new_err(msg)
        }
        core::Error::Io { .. } => PyOSError::new_err(msg),
    }
}

/// Cumulative energy of every domain at one instant.
#[pyclass(frozen, module = "carbonfast._native")]
struct Snapshot {
    inner: core::EdgeSnapshot,
    meter: Arc<core::Meter>,
}

impl Snapshot {
    /// The whole snapshot, waiting (without the GIL) for slow sources still being read.
    fn resolved(&self, py: Python<'_>) -> PyResult<&core::Snapshot> {
        py.detach(|| self.inner.resolve(&self.meter))
            .map_err(SensorUnavailable::new_err)
    }
}

#[pymethods]
impl Snapshot {
    /// CLOCK_MONOTONIC nanoseconds.
    #[getter]
    fn t_ns(&self) -> u64 {
        self.inner.t_ns()
    }

    /// Per domain, in raw counter units since the meter started, wraps unfolded.
    #[getter]
    fn totals(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        Ok(self.resolved(py)?.totals.clone())
    }
}

/// Energy between two snapshots.
#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct Window {
    duration_s: f64,
    joules: Vec<f64>,
    joules_low: Vec<f64>,
    joules_high: Vec<f64>,
    total_j: Option<f64>,
    total_range_j: Option<(f64, f64)>,
    /// Per domain: edges interpolated between the counter's refreshes.
    interpolated: Vec<bool>,
    /// Per domain: a counter in the total that never moved, left out of it.
    stalled: Vec<bool>,
    /// Per domain: added to `total_j` (a standby estimate only in place of frozen RAPL).
    counted: Vec<bool>,
    /// Per domain: a read failed or did not answer between the edges: its energy is unknown
    /// (NaN in `joules`) and it is left out of the total.
    failed: Vec<bool>,
}

#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct DomainInfo {
    name: String,
    kind: &'static str,
    source: &'static str,
    path: String,
    units_per_joule: f64,
    max_raw: u64,
    /// Joules after which the counter wraps; None where it never does (models, integrated
    /// power, counters too wide to wrap in a century).
    range_j: Option<f64>,
    counts_in_total: bool,
    /// The CodeCarbon part ("cpu", "gpu", "ram") its energy is reported in; None for none.
    part: Option<&'static str>,
    /// "energy" (a counter) or "power" (integrated by the meter).
    reading: &'static str,
    label: String,
    update_period_s: Option<f64>,
    estimated: bool,
    /// An estimate kept beside RAPL counters start-up did not see move: counted (and
    /// reported) only in a window where they all stood still.
    standby: bool,
    method: Option<String>,
    inputs: Vec<(String, String)>,
}

#[derive(Clone)]
#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct Problem {
    source: &'static str,
    kind: &'static str,
    path: String,
    reason: String,
    fix: Option<String>,
}

impl From<&core::ProblemReport> for Problem {
    fn from(p: &core::ProblemReport) -> Self {
        Problem {
            source: p.source,
            kind: p.kind,
            path: p.path.display().to_string(),
            reason: p.reason.clone(),
            fix: p.fix.clone(),
        }
    }
}

#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct PathInfo {
    name: &'static str,
    root: String,
    domains: Vec<String>,
    read_ns: Option<u64>,
    chosen: bool,
    problems: Vec<Problem>,
}

#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct SourceInfo {
    name: &'static str,
    root: String,
    domains: Vec<String>,
    notes: Vec<String>,
}

#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct SamplerStats {
    sampling: bool,
    samples: u64,
    missed: u64,
    dropped: u64,
    read_errors: u64,
    cpu_s: f64,
    period_s: f64,
}

/// The most samples a sampler's ring may hold (it is allocated when the meter starts).
const MAX_CAPACITY: usize = 10_000_000;

/// What bench_poll returns to Python: (t_ns, count, [(midpoint_ns, width_ns)], unlogged_j).
type PollResult = (u64, u64, Vec<(u64, u64)>, f64);

/// Every setting a Meter takes, as one mapping (keys as in carbonfast.config.SETTINGS). Paths
/// that are None take the system's own.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct MeterConfig {
    powercap_root: Option<PathBuf>,
    msr_root: Option<PathBuf>,
    cpu_topology_root: Option<PathBuf>,
    perf_root: Option<PathBuf>,
    proc_root: Option<PathBuf>,
    cgroup_root: Option<PathBuf>,
    nvml_library: Option<PathBuf>,
    #[pyo3(default)]
    amdsmi_library: Option<PathBuf>,
    #[pyo3(default)]
    hwmon_root: Option<PathBuf>,
    source: String,
    gpu: bool,
    gpu_energy: String,
    estimate: bool,
    scope: String,
    cpu_tdp_w: Option<f64>,
    cpu_threads: Option<u32>,
    ram_gb: Option<f64>,
    cpu_power_w: Option<f64>,
    ram_power_w: Option<f64>,
    sample_hz: Option<f64>,
    capacity: usize,
    #[pyo3(default)]
    max_power_w: Option<f64>,
    /// In a job of several processes per host: another one measures the host's CPU and DRAM.
    #[pyo3(default)]
    skip_host: bool,
    /// The CUDA indices of the GPUs this process measures (None: every visible one).
    #[pyo3(default)]
    gpu_indices: Option<Vec<usize>>,
}

/// The core's rule for one domain kind, for Python to read rather than re-code.
#[pyclass(frozen, get_all, module = "carbonfast._native")]
struct KindRule {
    name: &'static str,
    /// Added to the total where no platform meter, module or lone psys is the total.
    counts_in_total: bool,
    /// The CodeCarbon part its energy is the figure of, where it is one.
    part: Option<&'static str>,
    /// "added", "inside" (another domain) or "covers" (several others).
    role: &'static str,
    /// Read through RAPL: a host counter refreshing about every millisecond.
    rapl: bool,
}

/// The values the core accepts for each setting that is one of a few names: settings read them
/// from here rather than list them again.
#[pyfunction]
fn choices() -> std::collections::BTreeMap<&'static str, Vec<&'static str>> {
    std::collections::BTreeMap::from([
        ("source", core::RaplPath::CHOICES.to_vec()),
        ("scope", core::Scope::CHOICES.to_vec()),
        ("gpu_energy", core::select::GPU_ENERGY_CHOICES.to_vec()),
    ])
}

/// Every domain kind with its rules, in the order reports list them.
#[pyfunction]
fn kind_rules() -> Vec<KindRule> {
    core::DomainKind::ALL
        .into_iter()
        .map(|k| KindRule {
            name: k.as_str(),
            counts_in_total: k.counts_in_total(),
            part: k.part().map(core::Part::as_str),
            role: k.role().as_str(),
            rapl: k.is_rapl(),
        })
        .collect()
}

/// For a meter whose domains are of `kinds`, in order: whether each is in the total, and the
/// CodeCarbon part it is reported in (the core's `in_total` and `parts`).
#[pyfunction]
fn meter_rules(kinds: Vec<String>) -> PyResult<Vec<(bool, Option<&'static str>)>> {
    let kinds = kinds
        .iter()
        .map(|k| {
            core::DomainKind::from_name(k)
                .ok_or_else(|| PyValueError::new_err(format!("{k:?} is not a domain kind")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let totals = core::meter::in_total_of_kinds(&kinds);
    let parts = core::meter::parts_of_kinds(&kinds);
    Ok(totals
        .into_iter()
        .zip(parts)
        .map(|(t, p)| (t, p.map(core::Part::as_str)))
        .collect())
}

#[pyclass(frozen, module = "carbonfast._native")]
struct Meter {
    inner: Arc<core::Meter>,
    sampler: Option<core::Sampler>,
    /// Reads slow sources off the caller's thread, where there are any.
    deferred: Option<core::Deferred>,
    /// Where closed windows go (see `finish`): the label sums, and the recorder of windows kept
    /// one by one (carbonfast.report.history.WindowRecorder). None: the history is off.
    recording: std::sync::Mutex<Option<(Py<tally::Tally>, Py<PyAny>)>>,
}

#[pymethods]
impl Meter {
    /// `config` holds every setting, resolved and validated by carbonfast.config (the one
    /// settings table): see MeterConfig.
    #[new]
    fn new(py: Python<'_>, config: MeterConfig) -> PyResult<Self> {
        let MeterConfig {
            powercap_root,
            msr_root,
            cpu_topology_root,
            perf_root,
            proc_root,
            cgroup_root,
            nvml_library,
            amdsmi_library,
            hwmon_root,
            source,
            gpu,
            gpu_energy,
            estimate,
            scope,
            cpu_tdp_w,
            cpu_threads,
            ram_gb,
            cpu_power_w,
            ram_power_w,
            sample_hz,
            capacity,
            max_power_w,
            skip_host,
            gpu_indices,
        } = config;
        let (source, scope, gpu_energy) = (source.as_str(), scope.as_str(), gpu_energy.as_str());
        let max_power_w = max_power_w.unwrap_or(core::sampler::DEFAULT_MAX_POWER_W);
        let gpu_power_only =
            core::select::gpu_power_only(gpu_energy).map_err(PyValueError::new_err)?;
        let rapl = source
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("source: {e}")))?;
        let estimate = if estimate {
            let defaults = core::EstimateConfig::default();
            Some(core::EstimateConfig {
                scope: scope
                    .parse()
                    .map_err(|e: String| PyValueError::new_err(format!("scope: {e}")))?,
                cpu_tdp_w,
                cpu_threads,
                ram_gb,
                cpu_power_w,
                ram_power_w,
                proc_root: proc_root.clone().unwrap_or(defaults.proc_root),
                cgroup_root: cgroup_root.unwrap_or(defaults.cgroup_root),
            })
        } else {
            None
        };
        let config = core::DiscoverConfig {
            rapl,
            roots: core::RaplRoots {
                powercap: powercap_root,
                msr: msr_root,
                cpu_topology: cpu_topology_root,
                perf_pmu: perf_root,
                proc: proc_root,
            },
            gpu,
            nvml_library,
            amdsmi_library,
            hwmon_root,
            gpu_power_only,
            estimate,
            skip_host,
            gpu_indices,
        };
        let inner = Arc::new(
            py.detach(|| core::Meter::discover(&config))
                .map_err(to_py)?,
        );
        if capacity > MAX_CAPACITY {
            return Err(PyValueError::new_err(format!(
                "capacity={capacity} is not valid; expected 1 to {MAX_CAPACITY} samples (the \
                 ring is allocated up front)"
            )));
        }
        let sampler_config = core::SamplerConfig {
            sample_hz,
            capacity,
            max_power_w,
        };
        let sampler = core::Sampler::start(inner.clone(), &sampler_config);
        let deferred = core::Deferred::new(inner.clone());
        if let (Some(d), Some(s)) = (&deferred, &sampler) {
            if s.sampling() {
                // The trace is interpolated between the refreshes the poller timestamps.
                d.poll_always();
            }
        }
        Ok(Meter {
            inner,
            sampler,
            deferred,
            recording: std::sync::Mutex::new(None),
        })
    }

    fn read(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let inner = py
            .detach(|| match &self.deferred {
                Some(d) => d.read(),
                None => self.inner.read().map(core::EdgeSnapshot::ready),
            })
            .map_err(to_py)?;
        Ok(Snapshot {
            inner,
            meter: self.inner.clone(),
        })
    }

    /// Reads the start of a window; the wrap guard runs until the matching close_window.
    fn open_window(&self, py: Python<'_>) -> PyResult<Snapshot> {
        if let Some(s) = &self.sampler {
            s.window_opened();
        }
        self.read(py)
    }

    fn close_window(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let snap = self.read(py);
        if let Some(s) = &self.sampler {
            s.window_closed();
        }
        snap
    }

    /// Closed windows go to `tally` (added up per label) or, kept, to `recorder.record(m)`.
    fn record_into(&self, tally: Py<tally::Tally>, recorder: Py<PyAny>) {
        *self.recording_lock() = Some((tally, recorder));
    }

    /// Closes the window of `m` and records it: the one path every window takes (`with`, the
    /// decorator, begin/end).
    fn finish(&self, py: Python<'_>, m: &Bound<'_, MeasurementBase>, keep: bool) -> PyResult<()> {
        let end = Py::new(py, self.close_window(py)?)?;
        m.borrow_mut().end = Some(end.clone_ref(py));
        let recording = self
            .recording_lock()
            .as_ref()
            .map(|(t, r)| (t.clone_ref(py), r.clone_ref(py)));
        let Some((tally, recorder)) = recording else {
            return Ok(());
        };
        if keep {
            recorder.call_method1(py, pyo3::intern!(py, "record"), (m,))?;
            return Ok(());
        }
        let label = m.borrow().label.clone_ref(py).into_bound(py);
        let text: String;
        let label = if label.is_none() {
            ""
        } else if let Ok(s) = label.cast::<pyo3::types::PyString>() {
            s.to_str()?
        } else {
            text = label.str()?.to_string();
            &text
        };
        let start = m.borrow().start.clone_ref(py).into_bound(py);
        tally.get().add(label, start, end.into_bound(py));
        Ok(())
    }

    /// The sampled trace: (bytes of row-major f64 [t_s, energy_j per domain...], rows, width).
    /// A stepped counter's energy is interpolated between its refreshes; NaN where they are not
    /// known yet (see core::Sampler::trace_into).
    fn trace<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, usize, usize)> {
        let Some(s) = self.sampler.as_ref().filter(|s| s.sampling()) else {
            return Err(PyValueError::new_err(
                "this meter does not sample; create it with sample_hz=... to record a trace",
            ));
        };
        let (rows, width) = s.trace_len();
        let mut written = 0;
        let bytes = PyBytes::new_with(py, rows * width * 8, |buf| {
            written = s.trace_into_bytes(buf);
            Ok(())
        })?;
        Ok((bytes, written, width))
    }

    /// Windows open on this meter now, where it keeps count (it has a sampler or wrap guard).
    #[getter]
    fn open_windows(&self) -> Option<usize> {
        self.sampler.as_ref().map(core::Sampler::open_windows)
    }

    #[getter]
    fn sampler_stats(&self) -> Option<SamplerStats> {
        self.sampler.as_ref().map(|s| {
            let st = s.stats();
            SamplerStats {
                sampling: s.sampling(),
                samples: st.samples,
                missed: st.missed,
                dropped: st.dropped,
                read_errors: st.read_errors,
                cpu_s: st.cpu_ns as f64 * 1e-9,
                period_s: st.period_ns as f64 * 1e-9,
            }
        })
    }

    fn pause_for_fork(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(s) = &self.sampler {
                s.pause();
            }
            if let Some(d) = &self.deferred {
                d.pause_for_fork();
            }
        });
    }

    fn resume_after_fork(&self) {
        if let Some(s) = &self.sampler {
            s.resume();
        }
        if let Some(d) = &self.deferred {
            d.resume_after_fork();
        }
    }

    fn restart_after_fork(&self) {
        if let Some(s) = &self.sampler {
            s.restart_after_fork();
        }
        if let Some(d) = &self.deferred {
            d.restart_after_fork();
        }
    }

    /// Energy between two snapshots. Where a counter refreshes in steps, the window is resolved
    /// against its refreshes (see core::Meter::refine), which may wait for the next one.
    fn window(&self, py: Python<'_>, start: &Snapshot, end: &Snapshot) -> PyResult<Window> {
        let mut w = self.inner.window(start.resolved(py)?, end.resolved(py)?);
        py.detach(|| match &self.deferred {
            Some(d) => d.refine(&mut w),
            None => self.inner.refine_inline(&mut w),
        });
        Ok(Window {
            interpolated: w.interpolated,
            stalled: w.stalled,
            counted: w.counted,
            failed: w.failed,
            duration_s: w.duration_ns as f64 * 1e-9,
            joules: w.joules,
            joules_low: w.joules_low,
            joules_high: w.joules_high,
            total_j: w.total_j,
            total_range_j: w.total_range_j,
        })
    }

    /// The domain that paces a benchmark (the slowest-refreshing counter in the total) and
    /// its refresh period in seconds; None where every counter in the total moves on each read.
    fn pacing(&self) -> Option<(usize, f64)> {
        self.inner
            .pacing_domain()
            .map(|(d, p)| (d, p.nominal_ns as f64 * 1e-9))
    }

    /// (t_ns, count, new refreshes of `pacing` since `since` as (midpoint, width) in ns,
    /// energy of the unlogged domains in the total): see core::Meter::bench_poll. Keeps the
    /// poller reading.
    #[pyo3(signature = (pacing, since=None))]
    fn bench_poll(
        &self,
        py: Python<'_>,
        pacing: usize,
        since: Option<u64>,
    ) -> PyResult<PollResult> {
        if pacing >= self.inner.domains().len() {
            return Err(PyValueError::new_err(format!(
                "pacing={pacing} is not a domain index"
            )));
        }
        py.detach(|| {
            if let Some(d) = &self.deferred {
                d.keep_polling();
            }
            let mut snap = core::Snapshot::default();
            let p = self.inner.bench_poll(&mut snap, pacing, since)?;
            Ok((core::clock::monotonic_ns(), p.count, p.steps, p.unlogged_j))
        })
        .map_err(to_py)
    }

    /// Energy between two instants of the domains in the total that have a refresh log, in
    /// joules (see core::Meter::logged_energy); waits for a refresh after `t2_ns`.
    fn logged_energy(&self, py: Python<'_>, t1_ns: u64, t2_ns: u64) -> PyResult<f64> {
        py.detach(|| match &self.deferred {
            Some(d) => d.logged_energy(t1_ns, t2_ns),
            None => self.inner.logged_energy(t1_ns, t2_ns, &|s, t| {
                self.inner
                    .poll_until_step(s, t, &mut core::Snapshot::default())
            }),
        })
        .ok_or_else(|| {
            SensorUnavailable::new_err(
                "the counters' refreshes around the benchmark sample are no longer known (the counter \
                 stopped refreshing, or the reader fell behind)",
            )
        })
    }

    #[getter]
    fn domains(&self) -> Vec<DomainInfo> {
        self.inner
            .domains()
            .iter()
            .zip(self.inner.in_total())
            .zip(self.inner.parts())
            .zip(self.inner.standby())
            .map(|(((d, &in_total), part), &standby)| DomainInfo {
                name: d.name.clone(),
                kind: d.kind.as_str(),
                source: d.source,
                path: d.path.display().to_string(),
                units_per_joule: d.units_per_joule,
                max_raw: d.max_raw,
                range_j: d.wraps_after_j(),
                counts_in_total: in_total,
                part: part.map(core::Part::as_str),
                reading: match d.reading {
                    core::Reading::Energy => "energy",
                    core::Reading::PowerMilliwatts => "power",
                },
                label: d.label.clone(),
                update_period_s: d.update_period_ns.map(|ns| ns as f64 * 1e-9),
                estimated: d.estimated(),
                standby,
                method: d.estimate.as_ref().map(|e| e.method.clone()),
                inputs: d
                    .estimate
                    .as_ref()
                    .map(|e| e.inputs.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    #[getter]
    fn sources(&self) -> Vec<SourceInfo> {
        self.inner
            .sources()
            .iter()
            .map(|s| SourceInfo {
                name: s.name(),
                root: s.root().display().to_string(),
                domains: s.domains().iter().map(|d| d.name.clone()).collect(),
                notes: s.notes().to_vec(),
            })
            .collect()
    }

    #[getter]
    fn problems(&self) -> Vec<Problem> {
        self.inner.problems().iter().map(Problem::from).collect()
    }

    /// Each RAPL path considered at start-up: its domains, read cost, problems, and which won.
    #[getter]
    fn paths(&self) -> Vec<PathInfo> {
        self.inner
            .paths()
            .iter()
            .map(|p| PathInfo {
                name: p.name,
                root: p.root.display().to_string(),
                domains: p.domains.clone(),
                read_ns: p.read_ns,
                chosen: p.chosen,
                problems: p.problems.iter().map(Problem::from).collect(),
            })
            .collect()
    }

    /// Per domain: (readings that could not be explained, joules that may be missing).
    fn anomalies(&self) -> Vec<(u64, f64)> {
        self.inner.anomalies()
    }

    /// How many times each domain's counter has wrapped.
    fn wraps(&self) -> Vec<u64> {
        self.inner.wraps()
    }

    /// Per domain: why a read of it last failed or did not answer (None: never).
    fn failures(&self) -> Vec<Option<String>> {
        (0..self.inner.domains().len())
            .map(|d| self.inner.failure(d))
            .collect()
    }

    /// Per domain, for each GPU whose processes are known: (domain index, share, low, high,
    /// method), the part of its energy that is the processes `pids`' since `since_ns`
    /// (CLOCK_MONOTONIC). None for the other domains.
    #[allow(clippy::type_complexity)]
    fn gpu_shares(
        &self,
        py: Python<'_>,
        pids: Vec<u32>,
        since_ns: u64,
    ) -> Vec<Option<(usize, f64, f64, f64, String)>> {
        py.detach(|| self.inner.gpu_shares(&pids, since_ns))
            .into_iter()
            .enumerate()
            .map(|(d, s)| s.map(|s| (d, s.share, s.low, s.high, s.method)))
            .collect()
    }
}

/// The fields of a measurement window, kept natively so that opening and closing one runs no
/// Python code; carbonfast.measure.Measurement subclasses it with the figures derived from them.
#[pyclass(subclass, module = "carbonfast._native")]
struct MeasurementBase {
    #[pyo3(get)]
    label: Py<PyAny>,
    #[pyo3(get, name = "_meter")]
    meter: Py<PyAny>,
    #[pyo3(get, name = "_start")]
    start: Py<Snapshot>,
    #[pyo3(get, set, name = "_end")]
    end: Option<Py<Snapshot>>,
    #[pyo3(get, set, name = "_window")]
    window: Option<Py<Window>>,
    #[pyo3(get, set, name = "_intensity")]
    intensity: Option<Py<PyAny>>,
}

#[pymethods]
impl MeasurementBase {
    #[new]
    fn new(label: Py<PyAny>, meter: Py<PyAny>, start: Py<Snapshot>) -> Self {
        MeasurementBase {
            label,
            meter,
            start,
            end: None,
            window: None,
            intensity: None,
        }
    }
}

/// A window as a context manager: `with` enters and exits it natively. carbonfast.measure.Window
/// subclasses it (as a decorator too).
#[pyclass(subclass, module = "carbonfast._native")]
struct WindowBase {
    #[pyo3(get)]
    label: Py<PyAny>,
    /// The carbonfast Meter, or None for the default one.
    #[pyo3(get, name = "_meter")]
    meter: Py<PyAny>,
    #[pyo3(get, name = "_sync")]
    sync: Py<PyAny>,
    /// carbonfast.measure.Measurement and carbonfast.measure.default_meter.
    measurement_class: Py<PyAny>,
    default_meter: Py<PyAny>,
    /// Whether the history keeps each window as a row of its own; else they are added up per
    /// label (see tally.rs).
    #[pyo3(get, name = "_keep")]
    keep: bool,
    /// The measurements open through this object, with the thread that opened each: one
    /// Window may be entered from several threads at once, and each exit closes its own.
    current: std::sync::Mutex<Vec<Open>>,
}

/// The native meter of a carbonfast.Meter, through its public `native` property.
fn native_meter<'py>(meter: &Bound<'py, PyAny>) -> PyResult<Bound<'py, Meter>> {
    Ok(meter
        .getattr(pyo3::intern!(meter.py(), "native"))?
        .cast_into::<Meter>()?)
}

#[pymethods]
impl WindowBase {
    #[new]
    #[pyo3(signature = (label, meter, sync, measurement_class, default_meter, keep = false))]
    fn new(
        label: Py<PyAny>,
        meter: Py<PyAny>,
        sync: Py<PyAny>,
        measurement_class: Py<PyAny>,
        default_meter: Py<PyAny>,
        keep: bool,
    ) -> Self {
        WindowBase {
            label,
            meter,
            sync,
            measurement_class,
            default_meter,
            keep,
            current: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let meter = if self.meter.is_none(py) {
            self.default_meter.call0(py)?
        } else {
            self.meter.clone_ref(py)
        };
        if !self.sync.is_none(py) {
            self.sync.call0(py)?;
        }
        let native = native_meter(meter.bind(py))?;
        let start = Py::new(py, native.get().open_window(py)?)?;
        let m = self
            .measurement_class
            .call1(py, (self.label.clone_ref(py), meter, start))?;
        self.open_list().push((
            std::thread::current().id(),
            m.clone_ref(py),
            native.unbind(),
        ));
        Ok(m)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Py<PyAny>,
        _value: Py<PyAny>,
        _traceback: Py<PyAny>,
    ) -> PyResult<bool> {
        let me = std::thread::current().id();
        let (m, native) = {
            let mut open = self.open_list();
            match open.iter().rposition(|(t, _, _)| *t == me) {
                Some(i) => {
                    let (_, m, native) = open.remove(i);
                    (m, native)
                }
                None => return Ok(false),
            }
        };
        // A sync that fails still closes the window (else the meter would keep it open for
        // ever); its error is raised after.
        let synced = if self.sync.is_none(py) {
            Ok(())
        } else {
            self.sync.call0(py).map(drop)
        };
        let m = m.into_bound(py);
        let base = m.cast::<MeasurementBase>()?;
        native.get().finish(py, base, self.keep)?;
        synced?;
        Ok(false)
    }
}

impl Meter {
    fn recording_lock(&self) -> std::sync::MutexGuard<'_, Option<(Py<tally::Tally>, Py<PyAny>)>> {
        self.recording.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A window open through a WindowBase: the thread that opened it, its Measurement, and the
/// native meter it is read from (looked up once, at the start).
type Open = (std::thread::ThreadId, Py<PyAny>, Py<Meter>);

impl WindowBase {
    fn open_list(&self) -> std::sync::MutexGuard<'_, Vec<Open>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes this process the reaper of its orphaned descendants (see core::reaper).
#[pyfunction]
fn become_subreaper() -> PyResult<()> {
    core::reaper::become_subreaper().map_err(|e| PyOSError::new_err(e.to_string()))
}

/// Nanoseconds of each of `rounds` rounds of one bare pread per path (benchmark baseline).
#[pyfunction]
fn time_raw_preads(py: Python<'_>, paths: Vec<PathBuf>, rounds: usize) -> PyResult<Vec<u64>> {
    py.detach(|| core::baseline::time_raw_preads(&paths, rounds))
        .map_err(|e| PyOSError::new_err(e.to_string()))
}

/// (CPU ns, wall ns) of a thread that only sleeps to absolute deadlines at `hz` (benchmark
/// baseline: the platform's wakeup cost).
#[pyfunction]
fn time_sleep_loop(py: Python<'_>, hz: f64, seconds: f64) -> (u64, u64) {
    py.detach(|| core::baseline::sleep_loop_cpu(hz, seconds))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Meter>()?;
    m.add_class::<attribution::Attribution>()?;
    m.add_class::<Snapshot>()?;
    m.add_class::<Window>()?;
    m.add_class::<DomainInfo>()?;
    m.add_class::<Problem>()?;
    m.add_class::<SourceInfo>()?;
    m.add_class::<SamplerStats>()?;
    m.add_class::<PathInfo>()?;
    m.add_class::<MeasurementBase>()?;
    m.add_class::<WindowBase>()?;
    m.add_class::<tally::Tally>()?;
    m.add_class::<KindRule>()?;
    m.add_function(wrap_pyfunction!(kind_rules, m)?)?;
    m.add_function(wrap_pyfunction!(choices, m)?)?;
    m.add_function(wrap_pyfunction!(meter_rules, m)?)?;
    m.add_function(wrap_pyfunction!(time_raw_preads, m)?)?;
    m.add_function(wrap_pyfunction!(become_subreaper, m)?)?;
    m.add_function(wrap_pyfunction!(time_sleep_loop, m)?)?;
    m.add("SensorUnavailable", m.py().get_type::<SensorUnavailable>())?;
    m.add("MAX_POWER_W", core::meter::MAX_POWER_W)?;
    Ok(())
}
