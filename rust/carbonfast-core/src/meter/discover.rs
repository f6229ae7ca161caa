//! Finding a machine's sources (the RAPL path, GPUs through their vendors' libraries, hwmon's
//! sensors, estimates for what cannot be measured) and learning, at start-up, how often each
//! fast counter refreshes.

use super::{lock, Meter};
use crate::clock::monotonic_ns;
use crate::domain::{DomainKind, Reading};
use crate::error::Result;
use crate::refresh::{Period, StepLog};
use crate::select::{self, ProblemReport, RaplPath, RaplRoots};
use crate::source::amdsmi::AmdSmiSource;
use crate::source::estimate::{EstimateConfig, EstimateSource};
use crate::source::hwmon::{HwmonOptions, HwmonSource};
use crate::source::nvml::NvmlSource;
use crate::source::{Source, Unreadable};

/// How long start-up watches fast counters to learn how often they refresh (RAPL: ~1 ms).
const PERIOD_PROBE_NS: u64 = 4_000_000;

/// Where to look for hardware and whether to estimate what is not there.
#[derive(Debug, Clone, Default)]
pub struct DiscoverConfig {
    /// Which RAPL path to read: the best available by default.
    pub rapl: RaplPath,
    pub roots: RaplRoots,
    /// Measure NVIDIA GPUs through NVML.
    pub gpu: bool,
    /// None: the driver's libnvidia-ml.so.1.
    pub nvml_library: Option<std::path::PathBuf>,
    /// None: ROCm's libamd_smi.so.
    pub amdsmi_library: Option<std::path::PathBuf>,
    /// None: /sys/class/hwmon.
    pub hwmon_root: Option<std::path::PathBuf>,
    /// Integrate GPU power even where an energy counter exists.
    pub gpu_power_only: bool,
    /// None: never estimate; a domain that cannot be measured is missing.
    pub estimate: Option<EstimateConfig>,
    /// Leave out the host's CPU packages and DRAM, measured or estimated: in a job of several
    /// processes per host, another process measures them, and they must be counted once.
    pub skip_host: bool,
    /// Only the GPUs of these CUDA indices (None: every visible one): the ones this process
    /// uses, in a job where each process measures its own.
    pub gpu_indices: Option<Vec<usize>>,
}

impl Meter {
    /// A meter over every source found on this machine. Where a package or DRAM cannot be
    /// measured and `config.estimate` is set, that domain alone is estimated.
    pub fn discover(config: &DiscoverConfig) -> Result<Self> {
        let choice = if config.skip_host {
            select::Choice {
                source: None,
                paths: Vec::new(),
                problems: Vec::new(),
            }
        } else {
            select::choose(config.rapl, &config.roots)?
        };
        let mut unread: Vec<Unreadable> = choice
            .source
            .as_ref()
            .map(|s| s.unreadable().to_vec())
            .unwrap_or_default();
        let rapl_packages = choice
            .source
            .as_ref()
            .is_some_and(|s| s.domains().iter().any(|d| d.kind == DomainKind::Package));
        let mut sources: Vec<Box<dyn Source>> = choice.source.into_iter().collect();
        let mut problems = choice.problems;
        let mut measured_pci = Vec::new();
        if config.gpu {
            let nvml = NvmlSource::discover_only(
                config.nvml_library.as_deref(),
                config.gpu_power_only,
                config.gpu_indices.as_deref(),
            );
            let amd = AmdSmiSource::discover_only(
                config.amdsmi_library.as_deref(),
                config.gpu_power_only,
                config.gpu_indices.as_deref(),
            );
            measured_pci = amd.pci_addresses();
            for source in [Box::new(nvml) as Box<dyn Source>, Box::new(amd)] {
                let name = source.name();
                problems.extend(
                    source
                        .problems()
                        .iter()
                        .map(|e| ProblemReport::new(name, e)),
                );
                sources.push(source);
            }
        }
        // Grace's per-socket meters include the socket's memory: no RAM to estimate beside.
        let mut covers_memory = false;
        // hwmon's sensors belong to the host (its GPUs are told apart by PCI address, not by
        // the indices a rank is given): in a job, the rank that measures the host reads them.
        if !config.skip_host {
            let hwmon = HwmonSource::discover(
                config.hwmon_root.as_deref(),
                &HwmonOptions {
                    gpu: config.gpu,
                    rapl_packages,
                    skip_pci: measured_pci,
                },
            );
            problems.extend(
                hwmon
                    .problems()
                    .iter()
                    .map(|e| ProblemReport::new("hwmon", e)),
            );
            // Once each: RAPL and amd_energy name an unreadable socket alike.
            let more: Vec<Unreadable> = (hwmon.unreadable().iter())
                .filter(|u| !unread.contains(u))
                .cloned()
                .collect();
            unread.extend(more);
            covers_memory = hwmon.covers_memory();
            // Most machines have no power sensor in hwmon: nothing then to list or read.
            let found = !hwmon.domains().is_empty() || !hwmon.notes().is_empty();
            if found || !hwmon.problems().is_empty() {
                sources.push(Box::new(hwmon));
            }
        }
        let has = |kind| {
            sources
                .iter()
                .any(|s| s.domains().iter().any(|d| d.kind == kind))
        };
        // psys, a platform meter or superchip modules cover packages and memory: nothing to
        // estimate under them.
        let whole = has(DomainKind::Psys) || has(DomainKind::Platform) || has(DomainKind::Module);
        let need_cpu = !has(DomainKind::Package) && !whole;
        let need_ram = !has(DomainKind::Dram) && !whole && !covers_memory;
        if let Some(est) = config.estimate.as_ref().filter(|_| !config.skip_host) {
            if need_cpu || need_ram {
                sources.push(Box::new(EstimateSource::new(est, need_cpu, need_ram)?));
            }
            // Packages and DRAM whose counters exist but cannot be read, beside readable
            // ones: the total would silently miss them; each is estimated under its own name,
            // as its share of the whole.
            let readable = |kind| {
                sources
                    .iter()
                    .flat_map(|s| s.domains())
                    .filter(|d| d.kind == kind)
                    .count()
            };
            let (packages, drams) = (readable(DomainKind::Package), readable(DomainKind::Dram));
            // A package another source measures under the same name (amd_energy's sockets,
            // where powercap's cannot be read) is measured, not missing.
            let measured = |name: &str| {
                sources
                    .iter()
                    .any(|s| s.domains().iter().any(|d| d.name == name))
            };
            let missing: Vec<Unreadable> = unread
                .into_iter()
                .filter(|u| !measured(&u.name))
                .filter(|u| match u.kind {
                    DomainKind::Package => !need_cpu,
                    DomainKind::Dram => !need_ram,
                    _ => false,
                })
                .collect();
            if !missing.is_empty() {
                sources.push(Box::new(EstimateSource::for_unreadable(
                    est, &missing, packages, drams,
                )?));
            }
        }
        let mut meter = Meter::new(sources)?;
        meter.problems = problems;
        meter.paths = choice.paths;
        meter.learn_periods(PERIOD_PROBE_NS);
        match config.estimate.as_ref().filter(|_| !config.skip_host) {
            Some(est) if meter.rapl_unproven() => meter.with_standby(est),
            _ => Ok(meter),
        }
    }

    /// Whether the meter has RAPL counters in its total and start-up saw none of them refresh:
    /// frozen ones (an emulated RAPL returning constants, a static copy of sysfs) look so, and
    /// so, at start-up, does a counter read too slowly to see it step.
    fn rapl_unproven(&self) -> bool {
        let mut rapl = (0..self.domains.len())
            .filter(|&d| self.rapl_in_total(d))
            .peekable();
        rapl.peek().is_some() && rapl.all(|d| self.domains[d].update_period_ns.is_none())
    }

    /// This meter again, with a standby estimate of the packages and DRAM its RAPL counters
    /// cover: counted in a window only where they all stood still (see `Meter::standby`). An
    /// estimate that cannot be made leaves the meter as it was.
    fn with_standby(self, est: &EstimateConfig) -> Result<Self> {
        let rapl = |kind| {
            (0..self.domains.len()).any(|d| self.rapl_in_total(d) && self.domains[d].kind == kind)
        };
        let cpu = rapl(DomainKind::Package) || rapl(DomainKind::Psys);
        let ram = rapl(DomainKind::Dram);
        let Ok(standby) = EstimateSource::new(est, cpu, ram) else {
            return Ok(self);
        };
        let n = self.domains.len();
        let Meter {
            mut sources,
            problems,
            paths,
            ..
        } = self;
        sources.push(Box::new(standby));
        let mut meter = Meter::new(sources)?;
        meter.problems = problems;
        meter.paths = paths;
        // The total is as it was: the estimate is added only in a window where it stands in.
        meter.in_total = super::in_total(&meter.domains[..n]);
        meter.in_total.resize(meter.domains.len(), false);
        meter.standby[n..].fill(true);
        meter.learn_periods(PERIOD_PROBE_NS);
        Ok(meter)
    }

    /// Watches the fast counters whose refresh period is unknown for up to `budget_ns`, and
    /// records the period of those that change in steps (RAPL: about every millisecond).
    /// Counters that change on every read (models) or not at all are left alone.
    pub fn learn_periods(&mut self, budget_ns: u64) {
        for (s, source) in self.sources.iter().enumerate() {
            let base = self.offsets[s];
            let n = source.domains().len();
            let unknown: Vec<usize> = (0..n)
                .filter(|&i| {
                    let d = &self.domains[base + i];
                    d.reading == Reading::Energy && !d.estimated() && d.update_period_ns.is_none()
                })
                .collect();
            if unknown.is_empty() || source.slow() {
                continue;
            }
            let mut raw = vec![0; n];
            let mut last: Vec<Option<u64>> = vec![None; n];
            // Each change as the reads around it: (the read before, the read that saw it).
            let mut changes: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
            let mut reads = 0usize;
            let start = monotonic_ns();
            let mut before = start;
            let cpu_start = crate::clock::thread_cpu_ns();
            // A counter seen to step is watched on for a few more steps, up to PROBE_RUN_CAP
            // times the budget of the probe's own running time: a busy machine that keeps the
            // probe waiting does not use it up (within PROBE_WALL_CAP_NS of waiting, at most).
            // Per counter: gaps seen between changes one refresh apart.
            let mut exact: Vec<usize> = vec![0; n];
            let enough = |exact: &[usize]| unknown.iter().all(|&i| exact[i] >= 3);
            let seen =
                |changes: &[Vec<(u64, u64)>]| unknown.iter().any(|&i| !changes[i].is_empty());
            loop {
                let elapsed = monotonic_ns() - start;
                let ran = crate::clock::thread_cpu_ns() - cpu_start;
                // A counter that never moved is given up on only once the probe has run for a
                // quarter of the budget: one preempted before its second read saw nothing.
                let still = !seen(&changes) && 4 * ran >= budget_ns;
                if ran >= PROBE_RUN_CAP * budget_ns
                    || elapsed >= PROBE_WALL_CAP_NS
                    || (elapsed >= budget_ns && (still || enough(&exact)))
                {
                    break;
                }
                if source.read_raw(&mut raw).is_err() {
                    break;
                }
                let t = monotonic_ns();
                reads += 1;
                for &i in &unknown {
                    if last[i].is_some_and(|l| l != raw[i]) {
                        let change = (before, t);
                        if changes[i]
                            .last()
                            .is_some_and(|c| one_refresh_apart(c, &change))
                        {
                            exact[i] += 1;
                        }
                        changes[i].push(change);
                    }
                    last[i] = Some(raw[i]);
                }
                before = t;
            }
            // A RAPL counter in the total steps every millisecond or so, even idle: one that
            // stood still while another of its source stepped four times reads nothing.
            if unknown.iter().any(|&i| changes[i].len() >= 4) {
                for &i in unknown.iter().filter(|&&i| changes[i].is_empty()) {
                    self.stuck[base + i] = self.in_total[base + i];
                }
            }
            let mut obs = lock(&self.observed[s]);
            for &i in &unknown {
                if changes[i].len() < 3 || changes[i].len() * 2 > reads {
                    continue;
                }
                let Some(period) = step_period(&changes[i]) else {
                    continue;
                };
                self.domains[base + i].update_period_ns = Some(period);
                obs.logs[i] = Some(StepLog::new(Period::new(period)));
                self.logged[s] = true;
            }
        }
    }
}

/// Whether two successive changes a probe saw, each between two reads, are one refresh apart
/// to within a quarter: both seen tightly for the gap between them. A probe the machine kept
/// waiting sees a change late, or two refreshes as one; such a change was seen over at least
/// half the gap that ends with it, and is left out.
fn one_refresh_apart(a: &(u64, u64), b: &(u64, u64)) -> bool {
    let mid = |c: &(u64, u64)| c.0 + (c.1 - c.0) / 2;
    let gap = mid(b).saturating_sub(mid(a));
    4 * (a.1 - a.0) <= gap && 4 * (b.1 - b.0) <= gap
}

/// A counter's refresh period from the changes a probe saw: the median gap between successive
/// changes one refresh apart, or None where fewer than two such gaps were seen.
fn step_period(changes: &[(u64, u64)]) -> Option<u64> {
    let mid = |c: &(u64, u64)| c.0 + (c.1 - c.0) / 2;
    let mut gaps: Vec<u64> = changes
        .windows(2)
        .filter(|w| one_refresh_apart(&w[0], &w[1]))
        .map(|w| mid(&w[1]) - mid(&w[0]))
        .collect();
    if gaps.len() < 2 {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2])
}

/// The longest the start-up probe may wait on a busy machine for its running time.
const PROBE_WALL_CAP_NS: u64 = 500_000_000;

/// How many times its budget the start-up probe may run, watching a counter that steps, for
/// three changes one refresh apart. On a busy machine the scheduler may hold the probe up
/// every other refresh, so that such pairs are rare: at 10 times, a tenth of a millisecond
/// read beside two busy loops on two CPUs missed the period in one start-up in twenty.
const PROBE_RUN_CAP: u64 = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_period_is_judged_from_the_changes_seen_tightly() {
        const MS: u64 = 1_000_000;
        // Steps every 1 ms, seen within 10 µs while the probe runs; a probe the machine keeps
        // waiting 2.5 ms at a time sees two or three steps as one, late. The plain median of
        // the gaps (1.745 ms) is off; the gaps between changes one refresh apart are not.
        let seen = |at: u64, width: u64| (at - width, at);
        let changes = [
            seen(MS, 10_000),
            seen(2 * MS, 10_000),
            seen(4 * MS + MS / 2, 5 * MS / 2),
            seen(7 * MS, 5 * MS / 2),
            seen(9 * MS + MS / 2, 5 * MS / 2),
            seen(10 * MS, 10_000),
            seen(11 * MS, 10_000),
        ];
        let p = step_period(&changes).unwrap();
        assert!((990_000..=1_010_000).contains(&p), "{p} ns");
        // All seen loosely (a probe waiting 2 ms at a time): no period is judged from them.
        let loose = [(0, 2 * MS), (2 * MS, 4 * MS), (4 * MS, 6 * MS)];
        assert_eq!(step_period(&loose), None);
    }
}
