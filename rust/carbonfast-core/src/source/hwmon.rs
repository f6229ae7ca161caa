//! Linux hwmon: the power and energy sensors that drivers other than RAPL expose, under
//! /sys/class/hwmon/hwmonN (Documentation/hwmon/ in the kernel): AMD GPUs (amdgpu), Intel GPUs
//! (xe, i915), NVIDIA Grace (ACPI power meters labelled per socket), Jetson rails (ina3221),
//! server power meters (acpi power_meter) and AMD CPUs (amd_energy).
//!
//! Energy counters (energyN_input, µJ) go through the meter's wrap-aware Counter; power
//! readings (µW, or a rail's mV x mA) are read as milliwatts and integrated by the meter.
//! Files stay open and are read with pread, as powercap's are. Where each sensor belongs, and
//! so how it counts in the total, is decided in `place`.

mod device;
mod place;
mod sensor;

use crate::clock::monotonic_ns;
use crate::domain::{Domain, DomainKind, Reading};
use crate::error::{Error, Result};
use crate::source::{Source, Unreadable};
use device::Hwmon;
use place::{Placement, Plan};
use sensor::Sensor;
use std::io;
use std::path::{Path, PathBuf};

/// The kernel's hwmon class directory.
pub const DEFAULT_ROOT: &str = "/sys/class/hwmon";

/// A read of every sensor slower than this (an ACPI power meter evaluates firmware code) is
/// done off the window's thread.
const SLOW_READ_NS: u64 = 200_000;

/// What other sources already measure, so that hwmon counts nothing twice.
#[derive(Debug, Clone, Default)]
pub struct HwmonOptions {
    /// Measure GPUs (amdgpu, xe, i915).
    pub gpu: bool,
    /// RAPL already measures the CPU packages: amd_energy, which reads the same registers, is
    /// left out.
    pub rapl_packages: bool,
    /// PCI addresses ("0000:03:00.0") of GPUs another source measures (amdsmi).
    pub skip_pci: Vec<String>,
}

pub struct HwmonSource {
    root: PathBuf,
    domains: Vec<Domain>,
    sensors: Vec<Sensor>,
    problems: Vec<Error>,
    notes: Vec<String>,
    unreadable: Vec<Unreadable>,
    /// Per domain, how often its reading can change, where known.
    refresh_ns: Vec<Option<u64>>,
    min_interval_ns: u64,
    slow: bool,
}

impl HwmonSource {
    /// Finds every sensor under `root` (None: /sys/class/hwmon). Never fails: a sensor that
    /// cannot be read is a problem, with the fix.
    pub fn discover(root: Option<&Path>, options: &HwmonOptions) -> Self {
        let mut src = HwmonSource {
            root: root.map_or_else(|| PathBuf::from(DEFAULT_ROOT), Path::to_path_buf),
            domains: Vec::new(),
            sensors: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            unreadable: Vec::new(),
            refresh_ns: Vec::new(),
            min_interval_ns: 0,
            slow: false,
        };
        let mut placement = Placement::default();
        for (index, dir) in src.hwmon_dirs() {
            match Hwmon::open(index, dir) {
                Ok(hw) => {
                    for plan in placement.place(&hw, options) {
                        src.open(&hw, plan);
                    }
                }
                Err(e) => src.problems.push(e),
            }
        }
        src.notes.append(&mut placement.notes);
        src.note_integrated();
        src.measure_read_cost();
        src.min_interval_ns = src.min_interval();
        src
    }

    /// Whether a measured domain covers the memory of its socket as well as the CPU (NVIDIA
    /// Grace's "Grace Power Socket" meters include the LPDDR5X): nothing is to be estimated
    /// for memory beside it.
    pub fn covers_memory(&self) -> bool {
        self.domains.iter().any(|d| {
            d.kind == DomainKind::Package
                && place::grace_socket(&d.label).is_some_and(|(k, _, _)| k == DomainKind::Package)
        })
    }

    /// The hwmonN entries under the root, by N. A missing root is no problem: the machine has
    /// no hwmon sensors.
    fn hwmon_dirs(&mut self) -> Vec<(u32, PathBuf)> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.problems.push(Error::Io {
                    path: self.root.clone(),
                    source: e,
                });
                return Vec::new();
            }
        };
        let mut dirs: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let n = name.to_str()?.strip_prefix("hwmon")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        dirs.sort();
        dirs
    }

    /// Opens a planned sensor and adds its domain, or records why it cannot be read.
    fn open(&mut self, hw: &Hwmon, plan: Plan) {
        let sensor = match plan.spec.open(&hw.name) {
            Ok(s) => s,
            Err(e) => {
                self.problems.push(e);
                Unreadable::note(&mut self.unreadable, &plan.name, plan.kind);
                return;
            }
        };
        // Names are unique within a meter: a second device that would take one (two boards
        // with the same rail labels) is told apart by its hwmon number.
        let mut name = plan.name;
        if self.domains.iter().any(|d| d.name == name) {
            name = format!("{name}-hwmon{}", hw.index);
        }
        let reading = plan.spec.reading();
        self.domains.push(Domain {
            name,
            kind: plan.kind,
            source: "hwmon",
            path: plan.spec.path().to_path_buf(),
            // Counters in µJ; power integrated by the meter into nJ.
            units_per_joule: match reading {
                Reading::Energy => 1e6,
                Reading::PowerMilliwatts => 1e9,
            },
            // The drivers accumulate their 32-bit registers into 64 bits (xe, i915,
            // amd_energy): centuries at any power.
            max_raw: u64::MAX,
            reading,
            label: plan.label,
            // A counter's refresh period is for the meter to learn; a power meter's interval
            // is no counter's refresh (it only spaces the sampler's reads).
            update_period_ns: None,
            max_power_w: (plan.kind == DomainKind::Gpu)
                .then(|| gpu_power_ceiling_w(&hw.dir))
                .flatten(),
            estimate: None,
        });
        self.sensors.push(sensor);
        self.refresh_ns.push(plan.refresh_ns);
    }

    fn note_integrated(&mut self) {
        let power: Vec<&str> = self
            .domains
            .iter()
            .filter(|d| d.reading == Reading::PowerMilliwatts)
            .map(|d| d.name.as_str())
            .collect();
        if !power.is_empty() {
            self.notes.push(format!(
                "{} report power, not energy: their energy is integrated from power readings, \
                 every 20 ms while a window is open",
                power.join(", ")
            ));
        }
    }

    /// Times a few reads of every sensor: where one takes long (an ACPI power meter runs
    /// firmware code on each read), windows read this source on another thread.
    fn measure_read_cost(&mut self) {
        if self.sensors.is_empty() {
            return;
        }
        let mut raw = vec![0; self.sensors.len()];
        let mut costs = Vec::with_capacity(5);
        for _ in 0..5 {
            let t0 = monotonic_ns();
            if self.read_raw(&mut raw).is_err() {
                return;
            }
            costs.push(monotonic_ns() - t0);
        }
        costs.sort_unstable();
        let cost = costs[costs.len() / 2];
        if cost > SLOW_READ_NS {
            self.slow = true;
            self.notes.push(format!(
                "reading the hwmon sensors takes {:.2} ms here: windows read them on a \
                 background thread, so their edges do not wait for them",
                cost as f64 * 1e-6
            ));
        }
    }

    /// Reading faster than every sensor refreshes gains nothing: where each sensor says how
    /// often it does (power meters averaging over an interval), the sampler reads no faster.
    fn min_interval(&self) -> u64 {
        // None sorts first: one sensor of unknown refresh means no spacing at all.
        self.refresh_ns.iter().copied().min().flatten().unwrap_or(0)
    }
}

impl Source for HwmonSource {
    found_getters!("hwmon");

    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        super::first_failure(|failed| self.read_each(out, failed))
    }

    #[inline]
    fn read_each(&self, out: &mut [u64], failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        // In place, as RAPL's: a thread per read would cost more than the reads themselves
        // (about 9 µs against 2 µs). Sensors slow to read are read off the window's thread
        // (`slow`); a read that hangs holds up only the thread caught in it (see the meter).
        for (i, (sensor, slot)) in self.sensors.iter().zip(out.iter_mut()).enumerate() {
            match sensor.read() {
                Ok(v) => *slot = v,
                Err(e) => failed(i, e),
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

    fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}

/// The most a GPU can draw, for judging its readings: twice the highest power cap its driver
/// states (amdgpu's power1_cap_max or power1_cap, xe's and i915's power1_max; µW), as for
/// NVML's enforced limit. None where no cap is stated: carbonfast's 3 kW ceiling then applies.
fn gpu_power_ceiling_w(dir: &Path) -> Option<f64> {
    ["power1_cap_max", "power1_cap", "power1_max"]
        .iter()
        .filter_map(|f| crate::source::read_small(&dir.join(f), 32).ok())
        .filter_map(|text| crate::source::parse_u64(text.as_bytes()))
        .filter(|&uw| uw > 0)
        .max()
        .map(|uw| 2.0 * uw as f64 * 1e-6)
}
