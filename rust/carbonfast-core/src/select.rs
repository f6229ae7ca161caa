//! Choosing one of the RAPL paths (powercap, MSR, perf_event): they read the same counters, so
//! exactly one is used. By default the one that covers most domains, and among those the
//! cheapest to read, timed here at start-up; or the one the user names.

use crate::clock::monotonic_ns;
use crate::error::{Error, Result};
use crate::source::msr::{self, MsrSource};
use crate::source::perf::{self, PerfSource};
use crate::source::powercap::{self, PowercapSource};
use crate::source::Source;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaplPath {
    #[default]
    Auto,
    Powercap,
    Msr,
    Perf,
}

impl RaplPath {
    pub const NAMES: &'static str = "auto, powercap, msr, perf";
    /// Every path's name, as settings accept them.
    pub const CHOICES: [&'static str; 4] = ["auto", "powercap", "msr", "perf"];
}

impl FromStr for RaplPath {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(RaplPath::Auto),
            "powercap" => Ok(RaplPath::Powercap),
            "msr" => Ok(RaplPath::Msr),
            "perf" => Ok(RaplPath::Perf),
            other => Err(format!(
                "unknown source {other:?}; accepted: {}",
                RaplPath::NAMES
            )),
        }
    }
}

/// Where a GPU's energy comes from: "auto", its energy counter where it has one (else its
/// power readings, integrated), or "power", integrated power readings always.
pub const GPU_ENERGY_CHOICES: [&str; 2] = ["auto", "power"];

/// Whether the `gpu_energy` setting asks for power readings only.
pub fn gpu_power_only(gpu_energy: &str) -> std::result::Result<bool, String> {
    match gpu_energy {
        "auto" => Ok(false),
        "power" => Ok(true),
        other => Err(format!(
            "gpu_energy={other:?} is not valid; expected \"auto\" (the energy counter where \
             there is one) or \"power\" (integrate power readings)"
        )),
    }
}

/// Where each RAPL path looks (None: its environment variable, else the kernel's path).
#[derive(Debug, Clone, Default)]
pub struct RaplRoots {
    pub powercap: Option<PathBuf>,
    pub msr: Option<PathBuf>,
    /// /sys/devices/system/cpu: which CPU belongs to which package, for the MSR path.
    pub cpu_topology: Option<PathBuf>,
    pub perf_pmu: Option<PathBuf>,
    /// /proc: the CPU vendor, for the MSR path.
    pub proc: Option<PathBuf>,
}

/// A problem, detached from the source that found it, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemReport {
    pub source: &'static str,
    pub kind: &'static str,
    pub path: PathBuf,
    pub reason: String,
    pub fix: Option<String>,
}

impl ProblemReport {
    pub fn new(source: &'static str, e: &Error) -> Self {
        ProblemReport {
            source,
            kind: e.kind(),
            path: e.path().to_path_buf(),
            reason: e.to_string(),
            fix: e.fix().map(str::to_string),
        }
    }
}

/// What each path offered at start-up, for `carbonfast info`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReport {
    pub name: &'static str,
    pub root: PathBuf,
    pub domains: Vec<String>,
    /// Median cost of reading all its domains once, where it has any.
    pub read_ns: Option<u64>,
    pub chosen: bool,
    pub problems: Vec<ProblemReport>,
}

/// The chosen source (None when no path can read a package or psys), every path's report, and
/// the problems a measurement should mention.
pub struct Choice {
    pub source: Option<Box<dyn Source>>,
    pub paths: Vec<PathReport>,
    pub problems: Vec<ProblemReport>,
}

pub fn choose(which: RaplPath, roots: &RaplRoots) -> Result<Choice> {
    // None is the system's own path: the settings (and their environment variables) are
    // resolved by the caller, in one table.
    let or = |arg: &Option<PathBuf>, default: &str| {
        arg.clone().unwrap_or_else(|| PathBuf::from(default))
    };
    let open = |path: RaplPath| -> Box<dyn Source> {
        match path {
            RaplPath::Msr => Box::new(MsrSource::discover(
                &or(&roots.msr, msr::DEFAULT_ROOT),
                &or(&roots.cpu_topology, msr::DEFAULT_CPU_ROOT),
                roots.proc.as_deref().unwrap_or(Path::new("/proc")),
            )),
            RaplPath::Perf => Box::new(PerfSource::discover(&or(
                &roots.perf_pmu,
                perf::DEFAULT_ROOT,
            ))),
            _ => Box::new(PowercapSource::discover(&or(
                &roots.powercap,
                powercap::DEFAULT_ROOT,
            ))),
        }
    };
    let candidates = match which {
        RaplPath::Auto => vec![RaplPath::Powercap, RaplPath::Msr, RaplPath::Perf],
        one => vec![one],
    };
    let mut sources: Vec<(Box<dyn Source>, Option<u64>)> = candidates
        .into_iter()
        .map(|p| {
            let s = open(p);
            let cost = usable(s.as_ref()).then(|| read_cost_ns(s.as_ref()));
            (s, cost)
        })
        .collect();

    // Most domains first (a path without DRAM loses to one with it), then the cheapest.
    let best = sources
        .iter()
        .enumerate()
        .filter_map(|(i, (s, cost))| cost.map(|c| (i, s.domains().len(), c)))
        .min_by_key(|&(_, n, cost)| (std::cmp::Reverse(n), cost))
        .map(|(i, _, _)| i);

    if which != RaplPath::Auto && best.is_none() {
        let (s, _) = &sources[0];
        return Err(match s.problems().first() {
            Some(e) => clone_error(e),
            None => Error::Missing {
                path: s.root().to_path_buf(),
                why: format!("the {} path found no package or psys counter", s.name()),
                fix: "choose another source, or source=auto".into(),
            },
        });
    }

    let paths = sources
        .iter()
        .enumerate()
        .map(|(i, (s, cost))| PathReport {
            name: s.name(),
            root: s.root().to_path_buf(),
            domains: s.domains().iter().map(|d| d.name.clone()).collect(),
            read_ns: *cost,
            chosen: Some(i) == best,
            problems: reports(s.as_ref()),
        })
        .collect();
    let (source, problems) = match best {
        Some(i) => {
            let (s, _) = sources.swap_remove(i);
            let problems = reports(s.as_ref());
            (Some(s), problems)
        }
        None => (
            None,
            sources
                .iter()
                .flat_map(|(s, _)| reports(s.as_ref()))
                .collect(),
        ),
    };
    Ok(Choice {
        source,
        paths,
        problems,
    })
}

fn reports(s: &dyn Source) -> Vec<ProblemReport> {
    s.problems()
        .iter()
        .map(|e| ProblemReport::new(s.name(), e))
        .collect()
}

/// Whether a path can measure a total: a package or the platform.
fn usable(s: &dyn Source) -> bool {
    use crate::domain::DomainKind::{Package, Psys};
    s.domains().iter().any(|d| matches!(d.kind, Package | Psys))
}

/// Median of 21 reads of every domain.
fn read_cost_ns(s: &dyn Source) -> u64 {
    let mut buf = vec![0u64; s.domains().len()];
    let mut times: Vec<u64> = (0..21)
        .map(|_| {
            let t0 = monotonic_ns();
            let _ = s.read_raw(&mut buf);
            monotonic_ns() - t0
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// Errors hold io::Error, which does not clone; the user needs its message and fix.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::PermissionDenied { path, fix } => Error::PermissionDenied {
            path: path.clone(),
            fix: fix.clone(),
        },
        Error::Missing { path, why, fix } => Error::Missing {
            path: path.clone(),
            why: why.clone(),
            fix: fix.clone(),
        },
        Error::Malformed { path, detail } => Error::Malformed {
            path: path.clone(),
            detail: detail.clone(),
        },
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
    }
}
