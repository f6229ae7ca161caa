//! NVIDIA GPUs through NVML, loaded at run time (building carbonfast never needs CUDA).
//!
//! Each visible GPU is one domain, read with one NVML call:
//! - the total energy counter (Volta and newer, millijoules, never wraps in practice);
//! - else the instantaneous power (field POWER_INSTANT, else nvmlDeviceGetPowerUsage), which
//!   the meter integrates between readings (the sampler reads every 20 ms in open windows);
//! - else, where NVML gives neither, an estimate: enforced power limit x utilisation.
//!
//! CUDA_VISIBLE_DEVICES is honoured as CUDA reads it: indices or UUIDs (a unique prefix will
//! do), up to the first entry that names no GPU. A MIG instance is measured at its parent GPU.

use super::{vendor, GpuProcesses, Refreshes, Source, MAX_PROCESSES};
use crate::clock::monotonic_ns;
use crate::domain::{Domain, DomainKind, Estimate, Reading};
use crate::error::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A GPU's maximum power, for checking its counter: its enforced power limit times this.
const POWER_LIMIT_MARGIN: f64 = 2.0;

pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";
/// The library to load: the argument, else the driver's soname. The bool says whether the
/// user named it (then its absence is a problem, not a fact).
pub fn resolve_library(arg: Option<&Path>) -> (PathBuf, bool) {
    match arg {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_LIBRARY), false),
    }
}

type Ret = c_int;
type Handle = *mut c_void;

const SUCCESS: Ret = 0;
const NOT_SUPPORTED: Ret = 3;
const NO_PERMISSION: Ret = 4;
const NOT_FOUND: Ret = 6;
const INSUFFICIENT_SIZE: Ret = 7;
const GPU_IS_LOST: Ret = 15;
const FI_POWER_INSTANT: c_uint = 186;
const VALUE_TYPE_UNSIGNED_INT: c_int = 1;
const VALUE_TYPE_UNSIGNED_LONG_LONG: c_int = 3;

/// An energy read slower than this is done off the window's thread.
const SLOW_READ_NS: u64 = 100_000;

/// How long discovery watches an energy counter to learn how often it updates.
const UPDATE_PROBE_NS: u64 = 250_000_000;

/// nvmlFieldValue_t.
#[repr(C)]
#[derive(Clone, Copy)]
struct FieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: i64,
    latency_usec: i64,
    value_type: c_int,
    nvml_return: Ret,
    value: u64,
}

/// nvmlUtilization_t.
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// nvmlProcessInfo_t, as nvmlDeviceGetComputeRunningProcesses_v3 fills it (nvmlProcessInfo_v2_t).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// nvmlProcessUtilizationSample_t.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProcessSample {
    pid: c_uint,
    /// CPU timestamp in microseconds (wall clock, as gettimeofday gives it).
    time_stamp: c_ulonglong,
    sm_util: c_uint,
    mem_util: c_uint,
    enc_util: c_uint,
    dec_util: c_uint,
}

/// The NVML entry points carbonfast uses. Optional ones are missing from older drivers.
struct Api {
    init: unsafe extern "C" fn() -> Ret,
    shutdown: unsafe extern "C" fn() -> Ret,
    error_string: Option<unsafe extern "C" fn(Ret) -> *const c_char>,
    count: unsafe extern "C" fn(*mut c_uint) -> Ret,
    by_index: unsafe extern "C" fn(c_uint, *mut Handle) -> Ret,
    by_uuid: Option<unsafe extern "C" fn(*const c_char, *mut Handle) -> Ret>,
    index: Option<unsafe extern "C" fn(Handle, *mut c_uint) -> Ret>,
    name: unsafe extern "C" fn(Handle, *mut c_char, c_uint) -> Ret,
    uuid: unsafe extern "C" fn(Handle, *mut c_char, c_uint) -> Ret,
    total_energy: Option<unsafe extern "C" fn(Handle, *mut c_ulonglong) -> Ret>,
    power_usage: Option<unsafe extern "C" fn(Handle, *mut c_uint) -> Ret>,
    field_values: Option<unsafe extern "C" fn(Handle, c_int, *mut FieldValue) -> Ret>,
    power_limit: Option<unsafe extern "C" fn(Handle, *mut c_uint) -> Ret>,
    utilization: Option<unsafe extern "C" fn(Handle, *mut Utilization) -> Ret>,
    is_mig: Option<unsafe extern "C" fn(Handle, *mut c_uint) -> Ret>,
    mig_parent: Option<unsafe extern "C" fn(Handle, *mut Handle) -> Ret>,
    compute_processes: Option<unsafe extern "C" fn(Handle, *mut c_uint, *mut ProcessInfo) -> Ret>,
    process_utilization:
        Option<unsafe extern "C" fn(Handle, *mut ProcessSample, *mut c_uint, c_ulonglong) -> Ret>,
    // Last: the function pointers above must not outlive the library.
    _lib: Library,
}

impl Api {
    fn load(path: &Path) -> std::result::Result<Api, String> {
        let lib = vendor::open_library(path)?;
        // SAFETY (for each symbol): the types are those of NVML's public header, nvml.h,
        // and the pointers live no longer than `_lib`, dropped last.
        unsafe {
            use vendor::{optional as opt, required as req};
            Ok(Api {
                init: req(&lib, "nvmlInit_v2")?,
                shutdown: req(&lib, "nvmlShutdown")?,
                error_string: opt(&lib, "nvmlErrorString"),
                count: req(&lib, "nvmlDeviceGetCount_v2")?,
                by_index: req(&lib, "nvmlDeviceGetHandleByIndex_v2")?,
                by_uuid: opt(&lib, "nvmlDeviceGetHandleByUUID"),
                index: opt(&lib, "nvmlDeviceGetIndex"),
                name: req(&lib, "nvmlDeviceGetName")?,
                uuid: req(&lib, "nvmlDeviceGetUUID")?,
                total_energy: opt(&lib, "nvmlDeviceGetTotalEnergyConsumption"),
                power_usage: opt(&lib, "nvmlDeviceGetPowerUsage"),
                field_values: opt(&lib, "nvmlDeviceGetFieldValues"),
                power_limit: opt(&lib, "nvmlDeviceGetEnforcedPowerLimit"),
                utilization: opt(&lib, "nvmlDeviceGetUtilizationRates"),
                is_mig: opt(&lib, "nvmlDeviceIsMigDeviceHandle"),
                mig_parent: opt(&lib, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle"),
                compute_processes: opt(&lib, "nvmlDeviceGetComputeRunningProcesses_v3"),
                process_utilization: opt(&lib, "nvmlDeviceGetProcessUtilization"),
                _lib: lib,
            })
        }
    }

    fn describe(&self, rc: Ret) -> String {
        let text = self.error_string.and_then(|f| {
            // SAFETY: nvmlErrorString returns a static NUL-terminated string or null.
            let p = unsafe { f(rc) };
            (!p.is_null()).then(|| vendor::text(unsafe { CStr::from_ptr(p) }.to_bytes()))
        });
        match text {
            Some(t) => format!("{t} (NVML error {rc})"),
            None => format!("NVML error {rc}"),
        }
    }

    fn string(
        &self,
        f: unsafe extern "C" fn(Handle, *mut c_char, c_uint) -> Ret,
        h: Handle,
    ) -> String {
        // NVML_DEVICE_NAME_V2_BUFFER_SIZE and NVML_DEVICE_UUID_V2_BUFFER_SIZE are both 96.
        let mut buf = [0u8; 96];
        // SAFETY: `buf` is writable for its length, which is passed. NVML should NUL-terminate
        // the string, but the text is read within the buffer whether it does or not.
        if unsafe { f(h, buf.as_mut_ptr().cast(), buf.len() as c_uint) } != SUCCESS {
            return String::new();
        }
        vendor::text(&buf)
    }
}

/// How a GPU's energy is read.
#[derive(Clone, Copy)]
enum Mode {
    Counter,
    PowerField,
    PowerUsage,
    /// Power limit (mW) x utilisation, integrated by the source itself.
    Estimate {
        limit_mw: u32,
    },
}

struct Gpu {
    handle: Handle,
    mode: Mode,
}

/// Cumulative estimated energy per GPU (low, central, high, in nJ) and the last read time.
struct EstimateState {
    last_ns: u64,
    nanojoules: Vec<[f64; 3]>,
}

pub struct NvmlSource {
    api: Option<Api>,
    root: PathBuf,
    gpus: Vec<Gpu>,
    domains: Vec<Domain>,
    problems: Vec<Error>,
    notes: Vec<String>,
    estimates: Mutex<EstimateState>,
    power_only: bool,
    /// The shortest update period among the energy counters read.
    min_interval_ns: u64,
    /// Whether an energy-counter read took long enough at discovery to read off-thread.
    slow: bool,
}

// SAFETY: NVML handles are opaque identifiers that NVML documents as usable from any thread;
// the library is thread-safe.
unsafe impl Send for NvmlSource {}
// SAFETY: as above; the only mutable state is behind a Mutex.
unsafe impl Sync for NvmlSource {}

impl NvmlSource {
    /// Loads NVML and finds the visible GPUs. Never fails: a missing library is a note when
    /// nobody asked for one (no NVIDIA driver: nothing to measure), a problem otherwise.
    pub fn discover(library: Option<&Path>, power_only: bool) -> Self {
        NvmlSource::discover_only(library, power_only, None)
    }

    /// As `discover`, keeping only the visible GPUs whose CUDA index is in `only` (None: all
    /// of them): in a job of several processes, each measures the GPUs it uses.
    pub fn discover_only(library: Option<&Path>, power_only: bool, only: Option<&[usize]>) -> Self {
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        NvmlSource::discover_selected(library, visible.as_deref(), power_only, only)
    }

    /// As `discover`, with CUDA_VISIBLE_DEVICES given rather than read from the environment.
    /// `power_only` integrates power even where an energy counter exists (to cross-check it).
    pub fn discover_with(library: Option<&Path>, visible: Option<&str>, power_only: bool) -> Self {
        NvmlSource::discover_selected(library, visible, power_only, None)
    }

    /// As `discover_with`, keeping only the CUDA indices in `only` (None: all).
    pub fn discover_selected(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let deadline = vendor::discovery_timeout();
        NvmlSource::discover_within(library, visible, power_only, only, deadline)
    }

    /// As `discover_selected`, waiting at most `deadline` for NVML to load, start and list its
    /// GPUs. nvmlInit_v2 can block for good (a GPU fallen off the bus, Xid 79): then the work
    /// is left behind on its thread, and the source has no domains and a problem saying so.
    pub fn discover_within(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
        deadline: Duration,
    ) -> Self {
        let library = library.map(Path::to_path_buf);
        let visible = visible.map(str::to_owned);
        let only = only.map(<[usize]>::to_vec);
        let path = resolve_library(library.as_deref()).0;
        let found = vendor::within("cf-nvml-start", deadline, move || {
            NvmlSource::discover_now(
                library.as_deref(),
                visible.as_deref(),
                power_only,
                only.as_deref(),
            )
        });
        found.unwrap_or_else(|| {
            let mut src = NvmlSource::empty(path.clone(), power_only);
            src.problems.push(Error::Missing {
                path,
                why: format!(
                    "NVML did not answer within {}: nvmlInit_v2 or the listing of the GPUs is \
                     stuck, so no NVIDIA GPU is measured",
                    vendor::seconds(deadline)
                ),
                fix: format!(
                    "a GPU fallen off the bus (Xid 79 in dmesg) or a driver in a bad state does \
                     this: check nvidia-smi and dmesg; a GPU reset or a reboot is usually \
                     needed. If the driver is only slow to start, enable persistence mode \
                     (nvidia-smi -pm 1) or allow it longer with {}=<seconds>",
                    vendor::TIMEOUT_ENV
                ),
            });
            src
        })
    }

    fn empty(root: PathBuf, power_only: bool) -> Self {
        NvmlSource {
            api: None,
            root,
            gpus: Vec::new(),
            domains: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            estimates: Mutex::new(EstimateState {
                last_ns: monotonic_ns(),
                nanojoules: Vec::new(),
            }),
            power_only,
            min_interval_ns: 0,
            slow: false,
        }
    }

    /// Discovery itself, on the caller's thread and without a deadline.
    fn discover_now(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let (path, named) = resolve_library(library);
        let mut src = NvmlSource::empty(path.clone(), power_only);
        let api = match Api::load(&path) {
            Ok(api) => api,
            Err(e) if named => {
                src.problems.push(Error::Missing {
                    path,
                    why: format!("cannot load NVML: {e}"),
                    fix: "point the nvml_library setting (CARBONFAST_NVML_LIBRARY) at the \
                          driver's libnvidia-ml.so.1, or unset it"
                        .into(),
                });
                return src;
            }
            Err(_) => {
                src.notes.push(
                    "no NVIDIA driver (libnvidia-ml.so.1 not found): no GPU is measured".into(),
                );
                return src;
            }
        };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let rc = unsafe { (api.init)() };
        if rc != SUCCESS {
            src.problems.push(Error::Missing {
                path,
                why: format!("NVML failed to start: {}", api.describe(rc)),
                fix:
                    "check the NVIDIA driver with nvidia-smi; GPUs are not measured until it works"
                        .into(),
            });
            return src;
        }
        src.find_gpus(&api, visible, only);
        src.measure_update_periods(&api);
        let n = src.gpus.len();
        src.estimates.get_mut().unwrap().nanojoules = vec![[0.0; 3]; n];
        src.api = Some(api);
        src
    }

    fn find_gpus(&mut self, api: &Api, visible: Option<&str>, only: Option<&[usize]>) {
        let mut count: c_uint = 0;
        // SAFETY: `count` is writable.
        let rc = unsafe { (api.count)(&mut count) };
        if rc != SUCCESS {
            self.problems
                .push(self.nvml_error(api, "nvmlDeviceGetCount", rc));
            return;
        }
        let count = vendor::bounded_count(
            count,
            "NVML",
            "nvmlDeviceGetCount",
            &self.root,
            &mut self.problems,
        );
        let all: Vec<Handle> = (0..count)
            .filter_map(|i| {
                let mut h: Handle = std::ptr::null_mut();
                // SAFETY: `h` is writable; `i` is below the count NVML gave.
                (unsafe { (api.by_index)(i, &mut h) } == SUCCESS).then_some(h)
            })
            .collect();
        let chosen: Vec<(Handle, Option<String>)> = match visible {
            None => all.iter().map(|&h| (h, None)).collect(),
            Some(list) => self.visible_devices(api, &all, list),
        };
        for (cuda_index, (handle, mig)) in chosen.into_iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&cuda_index)) {
                continue;
            }
            self.add_gpu(api, handle, cuda_index, mig);
        }
    }

    /// CUDA_VISIBLE_DEVICES as CUDA reads it; each entry's handle, and the MIG UUID if the
    /// entry named a MIG instance.
    fn visible_devices(
        &mut self,
        api: &Api,
        all: &[Handle],
        list: &str,
    ) -> Vec<(Handle, Option<String>)> {
        let mut out = Vec::new();
        for entry in list.split(',').map(str::trim) {
            if entry.is_empty() {
                break;
            }
            let found = if let Ok(i) = entry.parse::<usize>() {
                all.get(i).map(|&h| (h, None))
            } else if entry.starts_with("MIG-") {
                self.mig_parent(api, entry)
                    .map(|h| (h, Some(entry.to_string())))
            } else {
                let matches: Vec<Handle> = all
                    .iter()
                    .copied()
                    .filter(|&h| api.string(api.uuid, h).starts_with(entry))
                    .collect();
                (matches.len() == 1).then(|| (matches[0], None))
            };
            match found {
                Some(f) => out.push(f),
                None => {
                    self.notes.push(format!(
                        "CUDA_VISIBLE_DEVICES entry {entry:?} names no GPU; as CUDA does, the \
                         entries from there on are ignored"
                    ));
                    break;
                }
            }
        }
        if out.is_empty() && list.trim().is_empty() {
            self.notes
                .push("CUDA_VISIBLE_DEVICES is empty: no GPU is visible".into());
        }
        out
    }

    fn mig_parent(&self, api: &Api, mig_uuid: &str) -> Option<Handle> {
        let (by_uuid, is_mig, parent) = (api.by_uuid?, api.is_mig?, api.mig_parent?);
        let c = CString::new(mig_uuid).ok()?;
        let mut h: Handle = std::ptr::null_mut();
        let mut flag: c_uint = 0;
        let mut p: Handle = std::ptr::null_mut();
        // SAFETY: `c` is NUL-terminated; the out-pointers are writable.
        unsafe {
            if by_uuid(c.as_ptr(), &mut h) != SUCCESS
                || is_mig(h, &mut flag) != SUCCESS
                || flag == 0
            {
                return None;
            }
            (parent(h, &mut p) == SUCCESS).then_some(p)
        }
    }

    fn add_gpu(&mut self, api: &Api, handle: Handle, cuda_index: usize, mig: Option<String>) {
        let mut nvml_index: c_uint = cuda_index as c_uint;
        if let Some(f) = api.index {
            // SAFETY: `nvml_index` is writable.
            unsafe { f(handle, &mut nvml_index) };
        }
        let name = api.string(api.name, handle);
        let uuid = api.string(api.uuid, handle);
        let domain_name = format!("gpu-{nvml_index}");
        let label = format!("{name}, {uuid}, cuda:{cuda_index}");
        if let Some(m) = &mig {
            self.notes.push(format!(
                "{m} is a MIG instance of {domain_name} ({name}): NVML measures only whole \
                 GPUs, so {domain_name} reports the whole GPU, other instances included"
            ));
        }
        let mode = match self.choose_mode(api, handle, &domain_name) {
            Ok(m) => m,
            Err(e) => {
                self.problems.push(e);
                return;
            }
        };
        let (reading, units_per_joule, estimate) = match mode {
            Mode::Counter => (Reading::Energy, 1e3, None),
            Mode::PowerField | Mode::PowerUsage => (Reading::PowerMilliwatts, 1e9, None),
            Mode::Estimate { limit_mw } => (
                Reading::Energy,
                1e9,
                Some(Estimate {
                    method: "enforced power limit x GPU utilisation (NVML gives neither \
                             energy nor power for this GPU)"
                        .into(),
                    inputs: vec![
                        (
                            "power_limit_w".into(),
                            format!("{}", f64::from(limit_mw) / 1e3),
                        ),
                        (
                            "range".into(),
                            "low: half of limit x utilisation; high: limit x (15% + 85% of \
                             utilisation), for the idle draw"
                                .into(),
                        ),
                    ],
                }),
            ),
        };
        if matches!(mode, Mode::PowerField | Mode::PowerUsage) {
            self.notes.push(format!(
                "{domain_name} has no energy counter: its energy is integrated from power \
                 readings ({}), every 20 ms while a window is open",
                if matches!(mode, Mode::PowerField) {
                    "instantaneous power field"
                } else {
                    "nvmlDeviceGetPowerUsage"
                }
            ));
        }
        // A GPU can draw past its limit for milliseconds, never twice it over a refresh.
        let max_power_w = api.power_limit.and_then(|f| {
            let mut mw: c_uint = 0;
            // SAFETY: `mw` is writable.
            let ok = unsafe { f(handle, &mut mw) } == SUCCESS && mw > 0;
            ok.then(|| POWER_LIMIT_MARGIN * f64::from(mw) / 1e3)
        });
        self.domains.push(Domain {
            name: domain_name,
            kind: DomainKind::Gpu,
            source: "nvml",
            path: self.root.clone(),
            units_per_joule,
            max_raw: u64::MAX,
            reading,
            label,
            update_period_ns: None,
            max_power_w,
            estimate,
        });
        self.gpus.push(Gpu { handle, mode });
    }

    /// The best way NVML offers to read this GPU, tried in order of quality.
    fn choose_mode(&self, api: &Api, h: Handle, name: &str) -> Result<Mode> {
        let mut failures = Vec::new();
        if let Some(f) = api.total_energy.filter(|_| !self.power_only) {
            let mut mj: c_ulonglong = 0;
            // SAFETY: `mj` is writable.
            match unsafe { f(h, &mut mj) } {
                SUCCESS => return Ok(Mode::Counter),
                rc => failures.push(rc),
            }
        }
        if let Some(f) = api.field_values {
            let mut v = power_field();
            // SAFETY: one writable field value is passed with count 1.
            if unsafe { f(h, 1, &mut v) } == SUCCESS && v.nvml_return == SUCCESS {
                return Ok(Mode::PowerField);
            }
        }
        if let Some(f) = api.power_usage {
            let mut mw: c_uint = 0;
            // SAFETY: `mw` is writable.
            match unsafe { f(h, &mut mw) } {
                SUCCESS => return Ok(Mode::PowerUsage),
                rc => failures.push(rc),
            }
        }
        if let (Some(limit), Some(util)) = (api.power_limit, api.utilization) {
            let mut mw: c_uint = 0;
            let mut u = Utilization::default();
            // SAFETY: the out-pointers are writable.
            if unsafe { limit(h, &mut mw) } == SUCCESS && unsafe { util(h, &mut u) } == SUCCESS {
                return Ok(Mode::Estimate { limit_mw: mw });
            }
        }
        let rc = failures
            .iter()
            .copied()
            .find(|&rc| rc != NOT_SUPPORTED)
            .unwrap_or(NOT_SUPPORTED);
        Err(self.gpu_error(api, name, rc))
    }

    fn gpu_error(&self, api: &Api, name: &str, rc: Ret) -> Error {
        let path = self.root.join(name);
        match rc {
            NO_PERMISSION => Error::PermissionDenied {
                path,
                fix: format!(
                    "{name}: NVML refused ({}); run as a user allowed to query the GPU \
                     (root, or see nvidia-smi's permission settings)",
                    api.describe(rc)
                ),
            },
            GPU_IS_LOST => Error::Missing {
                path,
                why: format!("{name} is lost ({})", api.describe(rc)),
                fix: "the GPU fell off the bus: check dmesg and nvidia-smi; a reset or reboot is \
                      usually needed"
                    .into(),
            },
            _ => Error::Missing {
                path,
                why: format!(
                    "{name} reports neither energy, power nor utilisation ({})",
                    api.describe(rc)
                ),
                fix: "nothing to do here: this GPU or vGPU profile does not expose them".into(),
            },
        }
    }

    fn nvml_error(&self, api: &Api, call: &str, rc: Ret) -> Error {
        Error::Missing {
            path: self.root.clone(),
            why: format!("{call} failed: {}", api.describe(rc)),
            fix: "check the NVIDIA driver with nvidia-smi".into(),
        }
    }

    /// Watches each energy counter for a short while and records how often it changes.
    fn measure_update_periods(&mut self, api: &Api) {
        let Some(f) = api.total_energy else { return };
        let counters: Vec<usize> = (0..self.gpus.len())
            .filter(|&i| matches!(self.gpus[i].mode, Mode::Counter))
            .collect();
        if counters.is_empty() {
            return;
        }
        let gpus = &self.gpus;
        let seen = Refreshes::watch(gpus.len(), &counters, UPDATE_PROBE_NS, |i| {
            let mut mj: c_ulonglong = 0;
            // SAFETY: `mj` is writable; the handle is valid.
            let rc = unsafe { f(gpus[i].handle, &mut mj) };
            (rc == SUCCESS).then_some(mj)
        });
        for &i in &counters {
            self.domains[i].update_period_ns = seen.periods[i];
        }
        self.min_interval_ns = seen.shortest_period_ns();
        if let Some(cost) = seen.read_cost_ns.filter(|&c| c > SLOW_READ_NS) {
            self.slow = true;
            self.notes.push(format!(
                "reading a GPU energy counter takes {:.2} ms here: windows read it on a \
                 background thread, so their edges do not wait for it",
                cost as f64 * 1e-6
            ));
        }
    }
}

/// Calls an NVML list function `f(count, array)` as its header says: first with no array to
/// learn the count (INSUFFICIENT_SIZE and the count, or SUCCESS: none), then with room for that
/// many, bounded by MAX_PROCESSES; once more if the list grew in between. The entries it wrote,
/// and whether they are the whole list; Err: NVML's error (NOT_FOUND included).
fn nvml_list<T: Default + Clone>(
    mut f: impl FnMut(*mut c_uint, *mut T) -> Ret,
) -> std::result::Result<(Vec<T>, bool), Ret> {
    let mut n: c_uint = 0;
    match f(&mut n, std::ptr::null_mut()) {
        SUCCESS => return Ok((Vec::new(), true)),
        INSUFFICIENT_SIZE => {}
        rc => return Err(rc),
    }
    for _ in 0..2 {
        let cap = n.clamp(1, MAX_PROCESSES);
        let mut buf = vec![T::default(); cap as usize];
        let mut got = cap;
        match f(&mut got, buf.as_mut_ptr()) {
            SUCCESS => {
                // A count past the array it was given reads nothing more.
                buf.truncate(got.min(cap) as usize);
                return Ok((buf, n <= MAX_PROCESSES));
            }
            INSUFFICIENT_SIZE if cap < MAX_PROCESSES && got > cap => n = got,
            // Longer than the bound: what NVML wrote is not said, so nothing is taken.
            INSUFFICIENT_SIZE => return Ok((Vec::new(), false)),
            rc => return Err(rc),
        }
    }
    Ok((Vec::new(), false))
}

/// `monotonic` (CLOCK_MONOTONIC ns) as NVML stamps its samples: wall-clock microseconds.
fn wall_clock_us(monotonic: u64) -> u64 {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now_wall.saturating_sub(monotonic_ns().saturating_sub(monotonic) / 1000)
}

fn power_field() -> FieldValue {
    FieldValue {
        field_id: FI_POWER_INSTANT,
        scope_id: 0,
        timestamp: 0,
        latency_usec: 0,
        value_type: 0,
        nvml_return: 0,
        value: 0,
    }
}

impl Drop for NvmlSource {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            // On a thread, waited for a bounded time (see vendor::shut_down): nvmlShutdown can
            // block for good on a lost GPU. The handles in `gpus` are not used after this.
            vendor::shut_down("cf-nvml-stop", api, |api| {
                // SAFETY: NVML was initialised by this source; every init is paired with one
                // shutdown (NVML reference-counts them).
                unsafe { (api.shutdown)() };
            });
        }
    }
}

impl Source for NvmlSource {
    found_getters!("nvml");

    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        super::first_failure(|failed| self.read_each(out, failed))
    }

    fn read_each(&self, out: &mut [u64], failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        let Some(api) = &self.api else { return Ok(()) };
        let now = monotonic_ns();
        let mut est = None;
        for (i, (gpu, slot)) in self.gpus.iter().zip(out.iter_mut()).enumerate() {
            let h = gpu.handle;
            let rc = match gpu.mode {
                Mode::Counter => {
                    let mut mj: c_ulonglong = 0;
                    // SAFETY: `mj` is writable; the function exists (mode chosen with it).
                    let rc = unsafe { api.total_energy.unwrap_unchecked()(h, &mut mj) };
                    *slot = mj;
                    rc
                }
                Mode::PowerField => {
                    let mut v = power_field();
                    // SAFETY: one writable field value, count 1.
                    let rc = unsafe { api.field_values.unwrap_unchecked()(h, 1, &mut v) };
                    *slot = match v.value_type {
                        VALUE_TYPE_UNSIGNED_INT => v.value & 0xFFFF_FFFF,
                        VALUE_TYPE_UNSIGNED_LONG_LONG => v.value,
                        _ => v.value & 0xFFFF_FFFF,
                    };
                    if rc == SUCCESS {
                        v.nvml_return
                    } else {
                        rc
                    }
                }
                Mode::PowerUsage => {
                    let mut mw: c_uint = 0;
                    // SAFETY: `mw` is writable.
                    let rc = unsafe { api.power_usage.unwrap_unchecked()(h, &mut mw) };
                    *slot = u64::from(mw);
                    rc
                }
                Mode::Estimate { limit_mw } => {
                    let mut u = Utilization::default();
                    // SAFETY: `u` is writable.
                    let rc = unsafe { api.utilization.unwrap_unchecked()(h, &mut u) };
                    let st = est.get_or_insert_with(|| {
                        self.estimates.lock().unwrap_or_else(|p| p.into_inner())
                    });
                    let dt_s = now.saturating_sub(st.last_ns) as f64 * 1e-9;
                    let limit_w = f64::from(limit_mw) * 1e-3;
                    let util = f64::from(u.gpu.min(100)) / 100.0;
                    let central = limit_w * util;
                    let watts = [central * 0.5, central, limit_w * (0.15 + 0.85 * util)];
                    for (acc, w) in st.nanojoules[i].iter_mut().zip(watts) {
                        *acc += w * dt_s * 1e9;
                    }
                    *slot = st.nanojoules[i][1] as u64;
                    rc
                }
            };
            if rc != SUCCESS {
                failed(i, self.gpu_error(api, &self.domains[i].name, rc));
            }
        }
        if let Some(mut st) = est {
            st.last_ns = now;
        }
        Ok(())
    }

    fn read_bounds(&self, low: &mut [u64], high: &mut [u64]) {
        if !self
            .gpus
            .iter()
            .any(|g| matches!(g.mode, Mode::Estimate { .. }))
        {
            return;
        }
        let st = self.estimates.lock().unwrap_or_else(|p| p.into_inner());
        for (i, gpu) in self.gpus.iter().enumerate() {
            if matches!(gpu.mode, Mode::Estimate { .. }) {
                low[i] = st.nanojoules[i][0] as u64;
                high[i] = st.nanojoules[i][2] as u64;
            }
        }
    }

    fn min_read_interval_ns(&self) -> u64 {
        self.min_interval_ns
    }

    fn slow(&self) -> bool {
        self.slow
    }

    /// nvmlDeviceGetComputeRunningProcesses_v3 for the list, nvmlDeviceGetProcessUtilization
    /// for the SM samples since `since_ns` (NOT_FOUND: none; not offered: `sampled` false).
    /// Both bounded by MAX_PROCESSES entries.
    fn gpu_processes(&self, domain: usize, since_ns: u64) -> Option<GpuProcesses> {
        let api = self.api.as_ref()?;
        let h = self.gpus.get(domain)?.handle;
        let list = api.compute_processes?;
        // SAFETY: NVML writes at most the count it is given into the array it is given (the
        // count is the array's length, or 0 with a null array).
        let (procs, complete) = nvml_list(|n, a| unsafe { list(h, n, a) }).ok()?;
        let mut out = GpuProcesses {
            processes: Vec::with_capacity(procs.len()),
            complete,
            sampled: false,
        };
        for p in &procs {
            out.entry(p.pid).compute = true;
        }
        if let Some(util) = api.process_utilization {
            let since_us = wall_clock_us(since_ns);
            // SAFETY: as above.
            match nvml_list(|n, a| unsafe { util(h, a, n, since_us) }) {
                Ok((samples, _)) => {
                    out.sampled = true;
                    for s in samples.iter().filter(|s| s.time_stamp > since_us) {
                        let e = out.entry(s.pid);
                        e.sm_sum += f64::from(s.sm_util.min(100));
                        e.samples += 1;
                    }
                }
                Err(NOT_FOUND) => out.sampled = true,
                Err(_) => {}
            }
        }
        Some(out)
    }
}
