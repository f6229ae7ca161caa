//! What a measured quantity is: a package, its cores, DRAM, a GPU, ...

use std::fmt;
use std::path::PathBuf;

/// The kind of hardware a domain measures. It decides whether the domain counts in the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// A CPU package (socket): cores, caches, memory controller, integrated graphics.
    Package,
    /// The cores of one package (RAPL PP0); inside the package.
    Core,
    /// The uncore of one package (RAPL PP1, often the integrated GPU); inside the package.
    Uncore,
    /// The DRAM attached to one package.
    Dram,
    /// The whole platform (RAPL psys): covers packages and more.
    Psys,
    /// A discrete GPU.
    Gpu,
    /// A meter of the whole machine (an ACPI power meter, a Jetson's VDD_IN rail): it covers
    /// every other domain, so where present it alone is the total.
    Platform,
    /// One superchip module (NVIDIA Grace: CPU, memory and, on Grace Hopper, the GPU): where
    /// present, the modules are the total.
    Module,
    /// A part of another measured domain (an Intel GPU's package inside its card, a Jetson rail
    /// inside VDD_IN, a Grace SysIO rail): reported, never added.
    Part,
}

/// How a domain's energy stands to the total (see `DomainKind::role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Added to the total beside the others (packages, DRAM, GPUs).
    Added,
    /// Inside another measured domain (core, uncore, a part): never added.
    Inside,
    /// Covers several others (psys, a platform meter, superchip modules): the total where
    /// present (see `meter::in_total`), never added to what it covers.
    Covers,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Added => "added",
            Role::Inside => "inside",
            Role::Covers => "covers",
        }
    }
}

impl DomainKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [DomainKind; 9] = [
        DomainKind::Package,
        DomainKind::Core,
        DomainKind::Uncore,
        DomainKind::Dram,
        DomainKind::Psys,
        DomainKind::Gpu,
        DomainKind::Platform,
        DomainKind::Module,
        DomainKind::Part,
    ];

    /// The kind named `name` (as `as_str` writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// How this kind's energy stands to the total.
    pub fn role(self) -> Role {
        match self {
            DomainKind::Package | DomainKind::Dram | DomainKind::Gpu => Role::Added,
            DomainKind::Core | DomainKind::Uncore | DomainKind::Part => Role::Inside,
            DomainKind::Psys | DomainKind::Platform | DomainKind::Module => Role::Covers,
        }
    }

    /// Whether RAPL (powercap, MSRs, perf_event) reads this kind: a counter that refreshes
    /// about every millisecond, and of the host, not of a device.
    pub fn is_rapl(self) -> bool {
        matches!(
            self,
            DomainKind::Package
                | DomainKind::Core
                | DomainKind::Uncore
                | DomainKind::Dram
                | DomainKind::Psys
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DomainKind::Package => "package",
            DomainKind::Core => "core",
            DomainKind::Uncore => "uncore",
            DomainKind::Dram => "dram",
            DomainKind::Psys => "psys",
            DomainKind::Gpu => "gpu",
            DomainKind::Platform => "platform",
            DomainKind::Module => "module",
            DomainKind::Part => "part",
        }
    }

    /// Maps a RAPL zone name ("package-0", "core", "dram", "psys", ...) to its kind.
    pub fn from_rapl_name(name: &str) -> Option<Self> {
        let base = name.split('-').next().unwrap_or(name);
        match base {
            "package" => Some(DomainKind::Package),
            "core" => Some(DomainKind::Core),
            "uncore" => Some(DomainKind::Uncore),
            "dram" => Some(DomainKind::Dram),
            "psys" => Some(DomainKind::Psys),
            _ => None,
        }
    }

    /// Whether this kind adds to the total energy beside packages. Core, uncore and parts sit
    /// inside another domain, and psys, platform meters and modules cover the others, so adding
    /// them would count energy twice (see `meter::in_total` for when those are the total).
    pub fn counts_in_total(self) -> bool {
        self.role() == Role::Added
    }

    /// The CodeCarbon part whose figure this kind's energy is: a package is CPU, DRAM is RAM,
    /// a GPU is GPU. Core and uncore sit inside their package and parts inside another domain,
    /// so they would count twice; psys, platform meters and modules cover several parts at
    /// once, so they are none of them (see `meter::parts` for psys standing for the CPU).
    pub fn part(self) -> Option<Part> {
        match self {
            DomainKind::Package => Some(Part::Cpu),
            DomainKind::Dram => Some(Part::Ram),
            DomainKind::Gpu => Some(Part::Gpu),
            _ => None,
        }
    }
}

/// The part of the machine that CodeCarbon's CSV splits energy into (cpu_energy, gpu_energy,
/// ram_energy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Cpu,
    Gpu,
    Ram,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Cpu => "cpu",
            Part::Gpu => "gpu",
            Part::Ram => "ram",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a domain's raw reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A free-running energy counter in `units_per_joule` units that wraps after `max_raw`.
    Energy,
    /// Instantaneous power in milliwatts; the meter integrates it over time (trapezoid) into
    /// nanojoules, so such a domain has `units_per_joule` 1e9. Only as good as the sampling.
    PowerMilliwatts,
}

/// How an estimated domain's energy is made, for the user to judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The model, in a phrase.
    pub method: String,
    /// Each input with its value and where it came from.
    pub inputs: Vec<(String, String)>,
}

/// One measured or estimated quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// Unique within a meter, stable across runs on the same machine: "package-0", "dram-0".
    pub name: String,
    pub kind: DomainKind,
    /// The source that reads it: "powercap", "msr", "nvml", ...
    pub source: &'static str,
    /// Where it is read from, for messages and `carbonfast info`.
    pub path: PathBuf,
    /// Raw counter units per joule (1e6 for microjoules, 2^14 for a typical RAPL MSR).
    /// Dividing by it, rather than multiplying by its inverse, keeps joules correctly rounded.
    pub units_per_joule: f64,
    /// The largest raw counter value before it wraps.
    pub max_raw: u64,
    pub reading: Reading,
    /// What the hardware calls itself, where the name alone does not say (a GPU's model and
    /// UUID); empty otherwise.
    pub label: String,
    /// How often the hardware refreshes the counter, where it is slow enough to matter for
    /// short windows (GPUs: tens of ms); None where unknown or negligible.
    pub update_period_ns: Option<u64>,
    /// The most power the hardware can draw, where it says (a GPU's enforced power limit,
    /// with a margin for transients): a reading that would need more is not counted. None
    /// takes carbonfast's MAX_POWER_W.
    pub max_power_w: Option<f64>,
    /// Set where the energy comes from a model, not a counter.
    pub estimate: Option<Estimate>,
}

impl Domain {
    pub fn counts_in_total(&self) -> bool {
        self.kind.counts_in_total()
    }

    pub fn part(&self) -> Option<Part> {
        self.kind.part()
    }

    pub fn estimated(&self) -> bool {
        self.estimate.is_some()
    }

    /// The energy the counter covers before it wraps, in joules.
    pub fn range_j(&self) -> f64 {
        (self.max_raw as f64 + 1.0) / self.units_per_joule
    }

    /// The energy after which the counter wraps, in joules, or None where it never does in
    /// practice: a model or integrated power (no counter), or a counter so wide that it would
    /// take over a century at the most power its hardware can draw (NVML's 64-bit millijoules:
    /// half a million years at 3 kW). A 64-bit count in fine units still wraps: perf's, in
    /// 2^-32 J, after 2^32 J, months at full power.
    pub fn wraps_after_j(&self) -> Option<f64> {
        if self.estimated() || self.reading != Reading::Energy {
            return None;
        }
        let range = self.range_j();
        let max_power_w = self.max_power_w.unwrap_or(crate::meter::MAX_POWER_W);
        (range / max_power_w < NEVER_WRAPS_S).then_some(range)
    }
}

/// A counter that takes longer than this to wrap at full power never wraps in any run.
const NEVER_WRAPS_S: f64 = 100.0 * 365.25 * 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rapl_names_map_to_kinds() {
        assert_eq!(
            DomainKind::from_rapl_name("package-1"),
            Some(DomainKind::Package)
        );
        assert_eq!(DomainKind::from_rapl_name("dram"), Some(DomainKind::Dram));
        assert_eq!(DomainKind::from_rapl_name("psys"), Some(DomainKind::Psys));
        assert_eq!(DomainKind::from_rapl_name("mystery"), None);
    }

    fn counter(units_per_joule: f64, max_raw: u64) -> Domain {
        Domain {
            name: "package-0".into(),
            kind: DomainKind::Package,
            source: "test",
            path: PathBuf::new(),
            units_per_joule,
            max_raw,
            reading: Reading::Energy,
            label: String::new(),
            update_period_ns: None,
            max_power_w: None,
            estimate: None,
        }
    }

    #[test]
    fn only_counters_that_can_wrap_in_a_run_have_a_wrap_range() {
        // powercap's microjoules up to max_energy_range_uj: a few minutes at full power.
        let rapl = counter(1e6, 262_143_328_850);
        assert_eq!(rapl.wraps_after_j(), Some(262_143.328_851));
        // perf's 64-bit count in 2^-32 J wraps after 2^32 J.
        assert_eq!(
            counter(2f64.powi(32), u64::MAX).wraps_after_j(),
            Some(2f64.powi(32))
        );
        // NVML's 64-bit millijoules, integrated power and models never wrap.
        let mut gpu = counter(1e3, u64::MAX);
        gpu.max_power_w = Some(770.0);
        assert_eq!(gpu.wraps_after_j(), None);
        let mut power = counter(1e3, u64::MAX);
        power.reading = Reading::PowerMilliwatts;
        assert_eq!(power.wraps_after_j(), None);
        let mut model = counter(1e9, u64::MAX);
        model.estimate = Some(Estimate {
            method: "a model".into(),
            inputs: Vec::new(),
        });
        assert_eq!(model.wraps_after_j(), None);
    }

    #[test]
    fn only_packages_dram_and_gpus_count_in_the_total() {
        assert!(DomainKind::Package.counts_in_total());
        assert!(DomainKind::Dram.counts_in_total());
        assert!(DomainKind::Gpu.counts_in_total());
        assert!(!DomainKind::Core.counts_in_total());
        assert!(!DomainKind::Uncore.counts_in_total());
        assert!(!DomainKind::Psys.counts_in_total());
        assert!(!DomainKind::Platform.counts_in_total());
        assert!(!DomainKind::Module.counts_in_total());
        assert!(!DomainKind::Part.counts_in_total());
    }

    #[test]
    fn packages_are_cpu_dram_is_ram_gpus_are_gpu_and_nothing_else_is_a_part() {
        assert_eq!(DomainKind::Package.part(), Some(Part::Cpu));
        assert_eq!(DomainKind::Dram.part(), Some(Part::Ram));
        assert_eq!(DomainKind::Gpu.part(), Some(Part::Gpu));
        for kind in [
            DomainKind::Core,
            DomainKind::Uncore,
            DomainKind::Psys,
            DomainKind::Platform,
            DomainKind::Module,
            DomainKind::Part,
        ] {
            assert_eq!(kind.part(), None, "{kind}");
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name_and_one_role() {
        for k in DomainKind::ALL {
            assert_eq!(DomainKind::from_name(k.as_str()), Some(k));
            assert_eq!(k.counts_in_total(), k.role() == Role::Added);
            // A part is only ever the figure of a kind that is added.
            assert!(k.part().is_none() || k.role() == Role::Added, "{k}");
        }
        assert_eq!(DomainKind::from_name("nonsense"), None);
    }
}
