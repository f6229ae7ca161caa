//! Where each hwmon sensor belongs: which driver it comes from decides its domain's name and
//! kind, and so how it counts in the total (see `meter::in_total`). Nothing is opened here.

use super::device::Hwmon;
use super::sensor::Spec;
use super::HwmonOptions;
use crate::domain::DomainKind;

/// A sensor to open, with the domain it will be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub name: String,
    pub kind: DomainKind,
    pub spec: Spec,
    pub label: String,
    /// How often the reading can change, where the driver says (a power meter's averaging
    /// interval).
    pub refresh_ns: Option<u64>,
}

/// Places the hwmon devices one by one, keeping what spans them: the notes, and the numbering
/// of platform meters.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    plans: Vec<Plan>,
    pub notes: Vec<String>,
    /// Platform meters numbered so far (platform-0, platform-1, ...).
    platforms: u32,
}

impl Placement {
    /// The sensors of one hwmon device to open, with their domains.
    pub fn place(&mut self, hw: &Hwmon, options: &HwmonOptions) -> Vec<Plan> {
        self.add(hw, options);
        std::mem::take(&mut self.plans)
    }

    fn add(&mut self, hw: &Hwmon, options: &HwmonOptions) {
        match hw.name.as_str() {
            "amdgpu" => self.amdgpu(hw, options),
            "xe" | "i915" => self.intel_gpu(hw, options),
            "power_meter" => self.power_meter(hw),
            "ina3221" => self.ina3221(hw),
            "amd_energy" => self.amd_energy(hw, options),
            _ if hw.has_power_sensors() => self.notes.push(format!(
                "{} has power sensors carbonfast does not place; not counted",
                hw.title()
            )),
            _ => {}
        }
    }

    /// The GPU's PCI address, or None (with a note) where it is not to be read here.
    fn gpu_address(&mut self, hw: &Hwmon, options: &HwmonOptions) -> Option<String> {
        if !options.gpu {
            self.notes.push(format!(
                "{}: GPUs are not measured (the gpu setting is off); not read",
                hw.title()
            ));
            return None;
        }
        let address = hw
            .pci
            .clone()
            .unwrap_or_else(|| format!("hwmon{}", hw.index));
        if options.skip_pci.contains(&address) {
            self.notes.push(format!(
                "{}: the GPU at {address} is measured through amdsmi; counted once, there",
                hw.title()
            ));
            return None;
        }
        Some(address)
    }

    /// amdgpu: power1_input (instantaneous, newer GPUs), else power1_average, in µW; no energy
    /// counter.
    fn amdgpu(&mut self, hw: &Hwmon, options: &HwmonOptions) {
        let Some(address) = self.gpu_address(hw, options) else {
            return;
        };
        let Some(path) = hw
            .attr("power1_input")
            .or_else(|| hw.attr("power1_average"))
        else {
            self.notes.push(format!(
                "{} reports no power (no power1_input or power1_average); not measured",
                hw.title()
            ));
            return;
        };
        let name = format!("gpu-{address}");
        // An APU's SMU reports the power of the whole chip, its CPU cores included (its limits
        // are labelled slowPPT and fastPPT): inside the CPU package that RAPL measures.
        let apu = ["power1_label", "power2_label"].iter().any(|f| {
            hw.text_or_none(f).is_some_and(|l| {
                l.eq_ignore_ascii_case("slowPPT") || l.eq_ignore_ascii_case("fastPPT")
            })
        });
        let kind = if apu {
            self.notes.push(format!(
                "{name} is an APU: amdgpu's power covers the whole chip, CPU cores included, so \
                 it is reported beside the CPU package and not added to it"
            ));
            DomainKind::Part
        } else {
            DomainKind::Gpu
        };
        self.plans.push(Plan {
            name,
            kind,
            spec: Spec::Power(path),
            label: hw.text_or_none("product_name").unwrap_or_default(),
            refresh_ns: None,
        });
    }

    /// xe and i915 (discrete Intel GPUs): 64-bit µJ counters the driver accumulates. Labelled
    /// "card" (the whole board) and "pkg" (the GPU package, inside the card) on newer parts; the
    /// card is the GPU and the rest are parts of it. A lone counter is the GPU.
    fn intel_gpu(&mut self, hw: &Hwmon, options: &HwmonOptions) {
        let Some(address) = self.gpu_address(hw, options) else {
            return;
        };
        let channels = hw.channels("energy", "_input");
        if channels.is_empty() {
            self.notes.push(format!(
                "{} has no energy counter (energyN_input); not measured",
                hw.title()
            ));
            return;
        }
        let labels: Vec<Option<String>> = channels
            .iter()
            .map(|n| {
                hw.text_or_none(&format!("energy{n}_label"))
                    .map(|l| l.to_ascii_lowercase())
            })
            .collect();
        let card = labels
            .iter()
            .position(|l| l.as_deref() == Some("card"))
            .unwrap_or(0);
        for (i, (n, label)) in channels.iter().zip(&labels).enumerate() {
            let Some(path) = hw.attr(&format!("energy{n}_input")) else {
                continue;
            };
            let (name, kind) = if i == card {
                (format!("gpu-{address}"), DomainKind::Gpu)
            } else {
                let part = label.clone().unwrap_or_else(|| format!("energy{n}"));
                (
                    format!("gpu-{address}-{}", sanitize(&part)),
                    DomainKind::Part,
                )
            };
            self.plans.push(Plan {
                name,
                kind,
                spec: Spec::Energy(path),
                label: label.clone().unwrap_or_default(),
                refresh_ns: None,
            });
        }
    }

    /// ACPI 4.0 power meters: powerN_average in µW, averaged over powerN_average_interval ms.
    /// NVIDIA Grace labels its meters per socket in powerN_oem_info; any other meter measures
    /// the whole machine.
    fn power_meter(&mut self, hw: &Hwmon) {
        let channels = hw.channels("power", "_average");
        if channels.is_empty() {
            self.notes.push(format!(
                "{} reports no power (no powerN_average); not measured",
                hw.title()
            ));
        }
        for n in channels {
            let Some(path) = hw.attr(&format!("power{n}_average")) else {
                continue;
            };
            let oem = hw
                .text_or_none(&format!("power{n}_oem_info"))
                .filter(|s| !s.is_empty());
            let (name, kind) = match oem.as_deref().and_then(grace_socket) {
                Some((kind, prefix, socket)) => (format!("{prefix}-{socket}"), kind),
                None => {
                    self.platforms += 1;
                    (
                        format!("platform-{}", self.platforms - 1),
                        DomainKind::Platform,
                    )
                }
            };
            // The meter's value is an average over this interval: it changes no faster.
            let interval_ns = hw
                .text_or_none(&format!("power{n}_average_interval"))
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(|ms| ms.saturating_mul(1_000_000));
            self.plans.push(Plan {
                name,
                kind,
                spec: Spec::Power(path),
                label: oem.unwrap_or_default(),
                refresh_ns: interval_ns,
            });
        }
    }

    /// ina3221 (Jetson boards): three rails, each with a bus voltage (inK_input, mV) and a
    /// current (currK_input, mA). VDD_IN is the module's input, the whole board; the other rails
    /// are parts of it.
    fn ina3221(&mut self, hw: &Hwmon) {
        for k in 1..=3 {
            let (Some(volts), Some(amps)) = (
                hw.attr(&format!("in{k}_input")),
                hw.attr(&format!("curr{k}_input")),
            ) else {
                continue;
            };
            if hw.text_or_none(&format!("in{k}_enable")).as_deref() == Some("0") {
                continue;
            }
            let label = hw
                .text_or_none(&format!("in{k}_label"))
                .filter(|s| !s.is_empty());
            let kind = match &label {
                Some(l) if l.eq_ignore_ascii_case("VDD_IN") => DomainKind::Platform,
                _ => DomainKind::Part,
            };
            let name = match &label {
                Some(l) => rail_name(l),
                None => format!("rail-{}-{k}", hw.index),
            };
            self.plans.push(Plan {
                name,
                kind,
                spec: Spec::Rail { volts, amps },
                label: label.unwrap_or_default(),
                refresh_ns: None,
            });
        }
    }

    /// amd_energy (AMD Zen, out-of-tree since Linux 5.13): µJ counters of the RAPL registers,
    /// accumulated to 64 bits, labelled Esocket<N> and Ecore<NNN>. Where powercap already
    /// reads the packages, these are the same registers: counted once, there.
    fn amd_energy(&mut self, hw: &Hwmon, options: &HwmonOptions) {
        if options.rapl_packages {
            self.notes.push(format!(
                "{}: the same RAPL registers as the packages powercap measures; left out, so \
                 that they are counted once",
                hw.title()
            ));
            return;
        }
        let mut cores = 0;
        for n in hw.channels("energy", "_input") {
            let label = hw
                .text_or_none(&format!("energy{n}_label"))
                .unwrap_or_default();
            let Some(path) = hw.attr(&format!("energy{n}_input")) else {
                continue;
            };
            if let Some(socket) = label
                .strip_prefix("Esocket")
                .and_then(|s| s.parse::<u32>().ok())
            {
                self.plans.push(Plan {
                    name: format!("package-{socket}"),
                    kind: DomainKind::Package,
                    spec: Spec::Energy(path),
                    label,
                    refresh_ns: None,
                });
            } else if label.starts_with("Ecore") {
                cores += 1;
            }
        }
        if cores > 0 {
            self.notes.push(format!(
                "{}: {cores} per-core counters left out: each core is inside its socket's counter",
                hw.title()
            ));
        }
    }
}

/// NVIDIA Grace's ACPI power meters, by their OEM string "<Kind> Power Socket <N>": the
/// module (Grace Hopper: CPU, GPU and memory), the Grace CPU with its memory, its cores, and
/// its SysIO rail. Case and spacing are not trusted.
pub(crate) fn grace_socket(oem: &str) -> Option<(DomainKind, &'static str, u32)> {
    let words: Vec<String> = oem
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let [kind, power, socket, n] = words.as_slice() else {
        return None;
    };
    if power != "power" || socket != "socket" {
        return None;
    }
    let n = n.parse().ok()?;
    let (kind, prefix) = match kind.as_str() {
        "module" => (DomainKind::Module, "module"),
        "grace" => (DomainKind::Package, "package"),
        "cpu" => (DomainKind::Core, "core"),
        "sysio" => (DomainKind::Part, "sysio"),
        _ => return None,
    };
    Some((kind, prefix, n))
}

/// A rail's domain name: its label, lowercased. A label that is the name of a domain other
/// sources make ("cpu", "ram" for the estimates) gets a prefix, so that names stay unique.
fn rail_name(label: &str) -> String {
    let name = sanitize(label);
    if matches!(name.as_str(), "cpu" | "ram" | "psys") {
        format!("rail-{name}")
    } else {
        name
    }
}

/// Lowercase, with spaces as underscores: a label made a name.
fn sanitize(label: &str) -> String {
    label
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_labels_are_read_whatever_their_case_and_spacing() {
        assert_eq!(
            grace_socket("Module Power Socket 0"),
            Some((DomainKind::Module, "module", 0))
        );
        assert_eq!(
            grace_socket("  grace  power socket 1\n"),
            Some((DomainKind::Package, "package", 1))
        );
        assert_eq!(
            grace_socket("CPU Power Socket 3"),
            Some((DomainKind::Core, "core", 3))
        );
        assert_eq!(
            grace_socket("SysIO POWER Socket 2"),
            Some((DomainKind::Part, "sysio", 2))
        );
        assert_eq!(grace_socket("Total Power Socket 0"), None);
        assert_eq!(grace_socket("Grace Power Socket"), None);
        assert_eq!(grace_socket("Dell PSU"), None);
    }

    #[test]
    fn rail_names_are_lowercased_labels_that_clash_with_nothing() {
        assert_eq!(rail_name("VDD_IN"), "vdd_in");
        assert_eq!(rail_name("VDD_CPU_GPU_CV"), "vdd_cpu_gpu_cv");
        assert_eq!(rail_name("CPU"), "rail-cpu");
        assert_eq!(rail_name("Sys 5V"), "sys_5v");
    }
}
