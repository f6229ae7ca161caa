//! AMD GPUs through AMD SMI (libamd_smi.so), loaded at run time as NVML is: no ROCm is needed
//! to build or run carbonfast.
//!
//! Each visible GPU is one domain, `gpu-amd-<index>` (its place in AMD SMI's enumeration), read
//! with one call:
//! - the energy accumulator (amdsmi_get_energy_count), in counts of `counter_resolution` uJ;
//! - else the socket power (amdsmi_get_power_info), which the meter integrates.
//!
//! How wide the accumulator is depends on the GPU, not on the API, which always hands out 64
//! bits: the driver copies the firmware's counter into gpu_metrics' 64-bit energy_accumulator,
//! and that counter is a 32-bit `EnergyAccumulator` on MI100 and the Radeon (Navi) parts, where
//! it wraps every 2^32 x 15.259 uJ = 65,536 J (under four minutes at 300 W), but 64 bits on MI200
//! (EnergyAcc64bitHigh:Low) and MI300 (SocketEnergyAcc), which never wrap. Neither AMD SMI nor
//! ROCm SMI unfolds the 32-bit wraps. So every reading is taken modulo 2^32 and the domain
//! declared a 32-bit counter: that is exact for the 32-bit counters, and for the 64-bit ones
//! loses nothing either, since the meter reads far more often than every 65,536 J and counts
//! each wrap. Declaring 64 bits instead would take every wrap of a 32-bit counter for a reset.

mod api;
mod visible;

use crate::domain::{Domain, DomainKind, Reading};
use crate::error::{Error, Result};

use crate::clock::monotonic_ns;
use crate::source::{vendor, GpuProcesses, Refreshes, Source};
use api::{Handle, PowerField, Session, Status, NOT_SUPPORTED, NOT_YET_IMPLEMENTED, NO_PERM};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use api::format_bdf;

/// The library's name where ROCm installs it.
pub const DEFAULT_LIBRARY: &str = "libamd_smi.so";

/// Where ROCm puts the library when the loader's path does not know it.
const ROCM_LIBRARY: &str = "/opt/rocm/lib/libamd_smi.so";

/// A GPU's maximum power, for checking its counter: its power cap times this.
const POWER_CAP_MARGIN: f64 = 2.0;

/// The accumulator is taken modulo 2^32 (see the module's comment).
const COUNTER_MASK: u64 = u32::MAX as u64;

/// An energy read slower than this is done off the window's thread.
const SLOW_READ_NS: u64 = 100_000;

/// How long discovery watches an energy counter to learn how often it updates.
const UPDATE_PROBE_NS: u64 = 250_000_000;

/// The fix for AMD SMI refusing access: the GPU device nodes belong to the render and video
/// groups. Never a capability, never world-readable devices.
const PERMISSION_FIX: &str = "AMD SMI reads the GPU through /dev/kfd and /dev/dri/renderD*, \
    which belong to the render and video groups: add your user to them with \
    `sudo usermod -aG render,video $USER`, then log in again";

/// The library to load, the fallbacks to try, and whether the user named it (then its absence
/// is a problem, not a fact).
fn resolve_library(arg: Option<&Path>) -> (Vec<PathBuf>, bool) {
    match arg {
        Some(p) => (vec![p.to_path_buf()], true),
        None => {
            let mut tries = vec![PathBuf::from(DEFAULT_LIBRARY)];
            if let Some(rocm) = std::env::var_os("ROCM_PATH") {
                tries.push(Path::new(&rocm).join("lib").join(DEFAULT_LIBRARY));
            }
            tries.push(PathBuf::from(ROCM_LIBRARY));
            (tries, false)
        }
    }
}

/// AMD SMI gives each process's engine time since it started, not samples: the time between
/// two looks is counted as samples of this length (NVML samples every 1/6 s), so that the
/// shares' ranges mean the same for both.
const SAMPLE_NS: u64 = 100_000_000;

/// How many looks at its process list each GPU keeps (the first always among them).
const LOOKS_KEPT: usize = 32;

/// A look at a GPU's process list: when, and each process's engine time then.
struct Look {
    t_ns: u64,
    gfx_ns: Vec<(u32, u64)>,
}

/// How a GPU's energy is read.
#[derive(Clone, Copy)]
enum Mode {
    Counter,
    Power(PowerField),
}

struct Gpu {
    handle: Handle,
    mode: Mode,
}

pub struct AmdSmiSource {
    session: Option<Arc<Session>>,
    root: PathBuf,
    gpus: Vec<Gpu>,
    domains: Vec<Domain>,
    pci: Vec<String>,
    problems: Vec<Error>,
    notes: Vec<String>,
    power_only: bool,
    /// The shortest update period among the energy counters read.
    min_interval_ns: u64,
    /// Whether an energy read took long enough at discovery to read off-thread.
    slow: bool,
    /// Per GPU, the earlier looks at its processes (see `gpu_processes`).
    looks: Mutex<Vec<Vec<Look>>>,
}

// SAFETY: AMD SMI handles are opaque identifiers usable from any thread; the library serialises
// its own calls, and this source's only mutable state after discovery is behind a Mutex.
unsafe impl Send for AmdSmiSource {}
// SAFETY: as above.
unsafe impl Sync for AmdSmiSource {}

impl AmdSmiSource {
    /// Loads AMD SMI and finds the visible GPUs (ROCR_VISIBLE_DEVICES, else
    /// HIP_VISIBLE_DEVICES), keeping those whose index is in `only` (None: all). Never fails: a
    /// missing library is a note when nobody asked for one, a problem otherwise.
    pub fn discover_only(library: Option<&Path>, power_only: bool, only: Option<&[usize]>) -> Self {
        let visible = ["ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"]
            .into_iter()
            .find_map(|var| std::env::var(var).ok().map(|list| (var, list)));
        let visible = visible.as_ref().map(|(var, list)| (*var, list.as_str()));
        AmdSmiSource::discover_from(library, visible, power_only, only)
    }

    /// As `discover_only`, with the visible devices given rather than read from the environment.
    pub fn discover_with(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let visible = visible.map(|list| ("ROCR_VISIBLE_DEVICES", list));
        AmdSmiSource::discover_from(library, visible, power_only, only)
    }

    /// As `discover_with`, waiting at most `deadline` for AMD SMI to load, start and list its
    /// GPUs (rather than CARBONFAST_VENDOR_TIMEOUT_S, else 5 s).
    pub fn discover_within(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
        deadline: Duration,
    ) -> Self {
        let visible = visible.map(|list| ("ROCR_VISIBLE_DEVICES", list));
        AmdSmiSource::discover_before(library, visible, power_only, only, deadline)
    }

    fn discover_from(
        library: Option<&Path>,
        visible: Option<(&'static str, &str)>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let deadline = vendor::discovery_timeout();
        AmdSmiSource::discover_before(library, visible, power_only, only, deadline)
    }

    /// Discovery on a thread, waited for at most `deadline`: amdsmi_init and the enumeration
    /// can block for good on a GPU that stopped answering. Then the work is left behind on its
    /// thread, and the source has no domains and a problem saying so.
    fn discover_before(
        library: Option<&Path>,
        visible: Option<(&'static str, &str)>,
        power_only: bool,
        only: Option<&[usize]>,
        deadline: Duration,
    ) -> Self {
        let library = library.map(Path::to_path_buf);
        let visible = visible.map(|(var, list)| (var, list.to_owned()));
        let only = only.map(<[usize]>::to_vec);
        let root = resolve_library(library.as_deref()).0.swap_remove(0);
        let found = vendor::within("cf-amdsmi-start", deadline, move || {
            let visible = visible.as_ref().map(|(var, list)| (*var, list.as_str()));
            AmdSmiSource::discover_now(library.as_deref(), visible, power_only, only.as_deref())
        });
        found.unwrap_or_else(|| {
            let mut src = AmdSmiSource::empty(root.clone(), power_only);
            src.problems.push(Error::Missing {
                path: root,
                why: format!(
                    "AMD SMI did not answer within {}: amdsmi_init or the listing of the GPUs \
                     is stuck, so no AMD GPU is measured",
                    vendor::seconds(deadline)
                ),
                fix: format!(
                    "a GPU that stopped answering or an amdgpu driver in a bad state does this: \
                     check amd-smi and dmesg; a GPU reset (amd-smi reset) or a reboot is usually \
                     needed. If the driver is only slow to start, allow it longer with {}=<seconds>",
                    vendor::TIMEOUT_ENV
                ),
            });
            src
        })
    }

    fn empty(root: PathBuf, power_only: bool) -> Self {
        AmdSmiSource {
            session: None,
            root,
            gpus: Vec::new(),
            domains: Vec::new(),
            pci: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            power_only,
            min_interval_ns: 0,
            slow: false,
            looks: Mutex::new(Vec::new()),
        }
    }

    /// Discovery itself, on the caller's thread and without a deadline.
    fn discover_now(
        library: Option<&Path>,
        visible: Option<(&str, &str)>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let (tries, named) = resolve_library(library);
        let mut src = AmdSmiSource::empty(tries[0].clone(), power_only);
        let mut failure = None;
        for path in &tries {
            match api::open(path) {
                Ok(s) => {
                    src.root = path.clone();
                    src.session = Some(s);
                    break;
                }
                Err(e @ api::OpenError::Init(..)) => {
                    src.root = path.clone();
                    failure = Some(e);
                    break;
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        let Some(session) = src.session.clone() else {
            match failure {
                // ROCm installed on a machine whose GPUs are not AMD's: nothing to measure.
                Some(api::OpenError::Init(api::DRIVER_NOT_LOADED, _)) if !named => {
                    src.notes.push(
                        "ROCm is installed but the amdgpu driver is not loaded: no AMD GPU is \
                         measured"
                            .into(),
                    );
                }
                Some(api::OpenError::Init(rc, why)) => src.problems.push(src.init_error(rc, why)),
                Some(api::OpenError::Load(e)) if named => src.problems.push(Error::Missing {
                    path: src.root.clone(),
                    why: format!("cannot load AMD SMI: {e}"),
                    fix: "point the amdsmi_library setting (CARBONFAST_AMDSMI_LIBRARY) at \
                          ROCm's libamd_smi.so (/opt/rocm/lib/libamd_smi.so), or unset it"
                        .into(),
                }),
                _ => src
                    .notes
                    .push("no ROCm (libamd_smi.so not found): no AMD GPU is measured".into()),
            }
            return src;
        };
        src.find_gpus(&session, visible, only);
        src.measure_update_periods(&session);
        src
    }

    /// The PCI addresses ("0000:03:00.0") of the GPUs measured here, for hwmon to skip.
    pub fn pci_addresses(&self) -> Vec<String> {
        self.pci.clone()
    }

    fn init_error(&self, rc: Status, why: String) -> Error {
        if rc == NO_PERM {
            return Error::PermissionDenied {
                // What was refused is the GPUs' device nodes, not the library.
                path: PathBuf::from("/dev/kfd"),
                fix: format!("AMD SMI was refused access to the GPUs ({why}); {PERMISSION_FIX}"),
            };
        }
        Error::Missing {
            path: self.root.clone(),
            why: format!("AMD SMI failed to start: {why}"),
            fix: "check the amdgpu driver with amd-smi (is the amdgpu module loaded?); AMD GPUs \
                  are not measured until it works"
                .into(),
        }
    }

    fn find_gpus(&mut self, s: &Session, visible: Option<(&str, &str)>, only: Option<&[usize]>) {
        let api = &s.api;
        let all: Vec<Handle> = match api.processors(&self.root, &mut self.problems) {
            Ok(p) => p.into_iter().filter(|&h| api.is_amd_gpu(h)).collect(),
            Err((call, rc)) => {
                let why = format!("{call} failed: {}", api.describe(rc));
                self.problems.push(self.init_error(rc, why));
                return;
            }
        };
        // ROCm numbers the GPUs in its own order, which AMD SMI tells from ROCm 6.4 (hip_id);
        // older libraries are taken to enumerate in that order, as they do on usual systems
        // (both follow the PCI addresses).
        let hip = hip_order(api, &all);
        let chosen: Vec<usize> = match visible {
            None => hip.iter().map(|&(i, _)| i).collect(),
            Some((var, list)) => {
                // Either UUID names a GPU: AMD SMI's, or the "GPU-..." one that ROCm shows.
                let uuids: Vec<[String; 2]> = hip
                    .iter()
                    .map(|(i, hip_uuid)| [api.uuid(all[*i]), hip_uuid.clone()])
                    .collect();
                let (chosen, notes) = visible::select(list, &uuids, var);
                self.notes.extend(notes);
                chosen.into_iter().map(|k| hip[k].0).collect()
            }
        };
        for (hip_index, index) in chosen.into_iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&hip_index)) {
                continue;
            }
            self.add_gpu(s, all[index], index, hip_index);
        }
    }

    fn add_gpu(&mut self, s: &Session, handle: Handle, index: usize, hip_index: usize) {
        let api = &s.api;
        let name = format!("gpu-amd-{index}");
        let model = api.market_name(handle);
        let uuid = api.uuid(handle);
        let pci = api.pci_address(handle);
        // What amd-smi calls the GPU, and the index a HIP program in this process uses.
        let hip = format!("hip:{hip_index}");
        let parts = [&*model, &*uuid, pci.as_deref().unwrap_or(""), &*hip];
        let label = parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let (mode, units_per_joule) = match self.choose_mode(s, handle, &name) {
            Ok(m) => m,
            Err(e) => {
                self.problems.push(e);
                return;
            }
        };
        let (reading, max_raw) = match mode {
            Mode::Counter => (Reading::Energy, COUNTER_MASK),
            Mode::Power(_) => (Reading::PowerMilliwatts, u64::MAX),
        };
        // A GPU can draw past its cap for milliseconds, never twice it over a refresh.
        let max_power_w = api.power_cap_w(handle).map(|w| POWER_CAP_MARGIN * w);
        self.domains.push(Domain {
            name,
            kind: DomainKind::Gpu,
            source: "amdsmi",
            path: self.root.clone(),
            units_per_joule,
            max_raw,
            reading,
            label,
            update_period_ns: None,
            max_power_w,
            estimate: None,
        });
        self.pci.extend(pci);
        self.gpus.push(Gpu { handle, mode });
    }

    /// The energy counter where it works (and power is not asked for), else the power field;
    /// with the domain's units per joule.
    fn choose_mode(&mut self, s: &Session, h: Handle, name: &str) -> Result<(Mode, f64)> {
        let api = &s.api;
        let mut failures: Vec<Status> = Vec::new();
        if !self.power_only && api.has_energy() {
            match api.energy(h) {
                Ok(e) if counter_works(e.count, e.resolution_uj) => {
                    return Ok((Mode::Counter, 1e6 / f64::from(e.resolution_uj)));
                }
                Ok(_) => failures.push(NOT_SUPPORTED),
                Err(rc) => failures.push(rc),
            }
        }
        let Some(layout) = api.power_layout() else {
            let rc = failures.first().copied().unwrap_or(NOT_SUPPORTED);
            if rc == NO_PERM {
                return Err(self.gpu_error(api, name, rc));
            }
            return Err(Error::Missing {
                path: self.root.join(name),
                why: format!(
                    "{name} {}, and this AMD SMI's power readings are laid out in a way \
                     carbonfast does not know (ROCm before 6.1)",
                    if self.power_only {
                        "must be read as power"
                    } else {
                        "has no energy counter"
                    }
                ),
                fix: "update ROCm to 6.1 or newer".into(),
            });
        };
        match api.find_power_field(h, layout) {
            Ok(Some(field)) => {
                if !self.power_only {
                    self.notes.push(format!(
                        "{name} has no energy counter: its energy is integrated from power \
                         readings (amdsmi_get_power_info), every 20 ms while a window is open"
                    ));
                }
                return Ok((Mode::Power(field), 1e9));
            }
            Ok(None) => failures.push(NOT_SUPPORTED),
            Err(rc) => failures.push(rc),
        }
        let rc = failures
            .iter()
            .copied()
            .find(|&rc| rc != NOT_SUPPORTED && rc != NOT_YET_IMPLEMENTED)
            .unwrap_or(NOT_SUPPORTED);
        Err(self.gpu_error(api, name, rc))
    }

    fn gpu_error(&self, api: &api::Api, name: &str, rc: Status) -> Error {
        let path = self.root.join(name);
        match rc {
            NO_PERM => Error::PermissionDenied {
                path,
                fix: format!(
                    "{name}: AMD SMI was refused ({}); {PERMISSION_FIX}",
                    api.describe(rc)
                ),
            },
            NOT_SUPPORTED | NOT_YET_IMPLEMENTED => Error::Missing {
                path,
                why: format!(
                    "{name} reports neither energy nor power ({})",
                    api.describe(rc)
                ),
                fix: "nothing to do here: this GPU (or a virtual function of it) does not \
                      expose them"
                    .into(),
            },
            _ => lost(api, &path, name, rc),
        }
    }

    /// Watches each energy counter for a short while and records how often it changes, and
    /// what one read costs.
    fn measure_update_periods(&mut self, s: &Session) {
        let api = &s.api;
        let counters: Vec<usize> = (0..self.gpus.len())
            .filter(|&i| matches!(self.gpus[i].mode, Mode::Counter))
            .collect();
        if counters.is_empty() {
            return;
        }
        let gpus = &self.gpus;
        let seen = Refreshes::watch(gpus.len(), &counters, UPDATE_PROBE_NS, |i| {
            api.energy(gpus[i].handle).ok().map(|e| e.count)
        });
        for &i in &counters {
            self.domains[i].update_period_ns = seen.periods[i];
        }
        self.min_interval_ns = seen.shortest_period_ns();
        if let Some(cost) = seen.read_cost_ns.filter(|&c| c > SLOW_READ_NS) {
            self.slow = true;
            self.notes.push(format!(
                "reading an AMD GPU energy counter takes {:.2} ms here: windows read it on \
                 a background thread, so their edges do not wait for it",
                cost as f64 * 1e-6
            ));
        }
    }
}

/// The GPUs (places in `all`) in ROCm's order, each with its HIP UUID where known.
fn hip_order(api: &api::Api, all: &[Handle]) -> Vec<(usize, String)> {
    let known: Option<Vec<(u32, String)>> = all.iter().map(|&h| api.hip_enumeration(h)).collect();
    match known {
        Some(ids) if is_permutation(ids.iter().map(|(id, _)| *id)) => {
            let mut order: Vec<(usize, String)> = Vec::with_capacity(all.len());
            for want in 0..all.len() as u32 {
                let i = ids.iter().position(|(id, _)| *id == want).unwrap();
                order.push((i, ids[i].1.clone()));
            }
            order
        }
        _ => (0..all.len()).map(|i| (i, String::new())).collect(),
    }
}

/// Whether the ids are 0..n, each once.
fn is_permutation(ids: impl ExactSizeIterator<Item = u32>) -> bool {
    let n = ids.len();
    let mut seen = vec![false; n];
    for id in ids {
        match seen.get_mut(id as usize) {
            Some(s) if !*s => *s = true,
            _ => return false,
        }
    }
    true
}

/// Whether an energy reading is a counter at all: the driver fills energy_accumulator with all
/// ones (UINT_MAX) where the firmware's counter is not trusted (recent Radeon parts), and a
/// resolution that is not a positive number leaves no unit.
fn counter_works(count: u64, resolution_uj: f32) -> bool {
    count != u64::MAX
        && count != u64::from(u32::MAX)
        && resolution_uj.is_finite()
        && resolution_uj > 0.0
}

/// A GPU that answered at discovery and no longer does.
fn lost(api: &api::Api, path: &Path, name: &str, rc: Status) -> Error {
    Error::Missing {
        path: path.to_path_buf(),
        why: format!("{name} is lost ({})", api.describe(rc)),
        fix: "the GPU stopped answering: check dmesg and amd-smi; a GPU reset (amd-smi reset) \
              or a reboot is usually needed"
            .into(),
    }
}

impl Source for AmdSmiSource {
    found_getters!("amdsmi");

    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        super::first_failure(|failed| self.read_each(out, failed))
    }

    fn read_each(&self, out: &mut [u64], failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let api = &session.api;
        for (i, (gpu, slot)) in self.gpus.iter().zip(out.iter_mut()).enumerate() {
            let read = match gpu.mode {
                // All ones is not refused here: a 32-bit counter passes through it once a
                // wrap; a driver that marks the counter unsupported at run time shows a
                // counter that never moves, which the meter notes.
                Mode::Counter => api.energy(gpu.handle).map(|e| e.count & COUNTER_MASK),
                Mode::Power(field) => api.power_w(gpu.handle, field).map(|w| w * 1000),
            };
            match read {
                Ok(v) => *slot = v,
                Err(rc) => {
                    let name = &self.domains[i].name;
                    failed(
                        i,
                        if rc == NO_PERM {
                            self.gpu_error(api, name, rc)
                        } else {
                            lost(api, &self.root.join(name), name, rc)
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn min_read_interval_ns(&self) -> u64 {
        self.min_interval_ns
    }

    fn slow(&self) -> bool {
        self.slow
    }

    /// amdsmi_get_gpu_process_list: the compute processes, and the GFX engine time each has
    /// used since the source's latest earlier look at or before `since_ns` (every call is such
    /// a look: a call at a window's start lets the call at its end see the work within it).
    /// Without such a look, the processes are listed with no samples. A process that started
    /// after that look is charged all its engine time; one that has exited is not seen.
    fn gpu_processes(&self, domain: usize, since_ns: u64) -> Option<GpuProcesses> {
        let session = self.session.as_ref()?;
        let gpu = self.gpus.get(domain)?;
        let (procs, complete) = session.api.processes(gpu.handle)?;
        let now = monotonic_ns();
        let mut looks = self.looks.lock().unwrap_or_else(|p| p.into_inner());
        if looks.len() < self.gpus.len() {
            looks.resize_with(self.gpus.len(), Vec::new);
        }
        let mine = &mut looks[domain];
        let base = mine
            .iter()
            .filter(|l| l.t_ns <= since_ns)
            .max_by_key(|l| l.t_ns);
        let mut out = GpuProcesses {
            processes: Vec::with_capacity(procs.len()),
            complete,
            // The engine times are there; without an earlier look they only cover no span.
            sampled: true,
        };
        for p in &procs {
            let e = out.entry(p.pid);
            e.compute = true;
            if let Some(base) = base {
                let before = base
                    .gfx_ns
                    .iter()
                    .find(|(pid, _)| *pid == p.pid)
                    .map_or(0, |&(_, ns)| ns);
                let busy_ns = p.gfx_ns.saturating_sub(before);
                let samples = now.saturating_sub(base.t_ns).div_ceil(SAMPLE_NS).max(1);
                e.samples = u32::try_from(samples).unwrap_or(u32::MAX);
                let percent = busy_ns as f64 / SAMPLE_NS as f64 * 100.0;
                e.sm_sum = percent.min(100.0 * f64::from(e.samples));
            }
        }
        if mine.len() >= LOOKS_KEPT {
            mine.remove(1);
        }
        mine.push(Look {
            t_ns: now,
            gfx_ns: procs.iter().map(|p| (p.pid, p.gfx_ns)).collect(),
        });
        Some(out)
    }
}
