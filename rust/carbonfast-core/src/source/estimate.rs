//! The last resort where no counter is readable (VMs, containers, CI): energy from a power model.
//!
//! CPU: a power curve from idle to full load, linear in utilisation, applied to the CPU time
//! actually used in the chosen scope:
//!
//!   E = P_idle * elapsed + (P_full - P_idle) * cpu_seconds / threads
//!
//! Linear, so that energy adds up: two back-to-back windows sum to the window around both,
//! however often the meter reads. RAM: installed memory times watts per GB, over elapsed time.
//! Every figure comes with a low and a high bound from the same formula with the bounds of its
//! parameters, and every domain names its method and inputs.

use super::{Source, Unreadable};
use crate::clock::monotonic_ns;
use crate::cputime::{CpuTime, Scope};
use crate::domain::{Domain, DomainKind, Estimate, Reading};
use crate::error::{Error, Result};
use crate::hostinfo::{parse_cpuinfo, parse_meminfo_total, CpuInfo};
use crate::tdp;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Share of TDP drawn at idle and at full load: low, central, high. The central values are the
/// end points of the Teads/Boavizta TDP-based workload curve (12% at idle, 102% at 100% load);
/// the bounds cover package power seen at idle (5-30% of TDP) and turbo above TDP (PL2).
const TDP_IDLE_SHARE: [f64; 3] = [0.05, 0.12, 0.30];
const TDP_FULL_SHARE: [f64; 3] = [0.75, 1.02, 1.30];

/// Watts per logical CPU at idle and at full load, where the model's TDP is unknown or covers a
/// host this VM only has a slice of. Central values: Cloud Carbon Footprint's average
/// coefficients per vCPU (0.74 W at 0%, 3.5 W at 100%); bounds at half and twice those.
const THREAD_IDLE_W: [f64; 3] = [0.37, 0.74, 1.48];
const THREAD_FULL_W: [f64; 3] = [1.75, 3.5, 7.0];

/// Watts per GB of installed memory. Central: 3 W per 8 GB, as CodeCarbon assumes; bounds
/// cover DDR4/DDR5 modules from idle to busy.
const RAM_W_PER_GB: [f64; 3] = [0.2, 0.375, 0.6];

const LOW: usize = 0;
const CENTRAL: usize = 1;
const HIGH: usize = 2;

/// What users may set; everything else is read from the machine.
#[derive(Debug, Clone)]
pub struct EstimateConfig {
    pub scope: Scope,
    /// TDP of one socket, in watts.
    pub cpu_tdp_w: Option<f64>,
    /// Logical CPUs the utilisation is relative to.
    pub cpu_threads: Option<u32>,
    /// Installed memory, GB.
    pub ram_gb: Option<f64>,
    /// A fixed CPU power, in watts, instead of the curve.
    pub cpu_power_w: Option<f64>,
    /// A fixed RAM power, in watts, instead of the per-GB figure.
    pub ram_power_w: Option<f64>,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Default for EstimateConfig {
    fn default() -> Self {
        EstimateConfig {
            scope: Scope::Process,
            cpu_tdp_w: None,
            cpu_threads: None,
            ram_gb: None,
            cpu_power_w: None,
            ram_power_w: None,
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// Power of one estimated domain: P = idle + (full - idle) * cpu_seconds / (elapsed * threads),
/// per bound. RAM and fixed powers have idle == full.
#[derive(Debug, Clone)]
struct PowerModel {
    idle_w: [f64; 3],
    full_w: [f64; 3],
    threads: f64,
}

impl PowerModel {
    fn constant(w: [f64; 3]) -> Self {
        PowerModel {
            idle_w: w,
            full_w: w,
            threads: 1.0,
        }
    }

    fn energy_j(&self, bound: usize, elapsed_s: f64, cpu_s: f64) -> f64 {
        self.idle_w[bound] * elapsed_s
            + (self.full_w[bound] - self.idle_w[bound]) * cpu_s / self.threads
    }
}

struct State {
    last_t_ns: u64,
    last_cpu_s: f64,
    /// Cumulative joules per domain, per bound.
    energy: Vec<[f64; 3]>,
}

pub struct EstimateSource {
    root: PathBuf,
    domains: Vec<Domain>,
    models: Vec<PowerModel>,
    cpu_time: Option<CpuTime>,
    state: Mutex<State>,
}

/// Joules are kept as nanojoule integers in the meter, like any other counter.
const UNITS_PER_JOULE: f64 = 1e9;

impl EstimateSource {
    /// Estimates the CPU packages (`cpu`) and/or the memory (`ram`), whichever the caller could
    /// not measure.
    pub fn new(config: &EstimateConfig, cpu: bool, ram: bool) -> Result<Self> {
        let mut domains = Vec::new();
        let mut models = Vec::new();
        let mut cpu_time = None;
        if cpu {
            let (model, estimate, ct) = whole_cpu(config)?;
            domains.push(estimated_domain("cpu", DomainKind::Package, estimate));
            models.push(model);
            cpu_time = ct;
        }
        if ram {
            let (model, estimate) = ram_model(config)?;
            domains.push(estimated_domain("ram", DomainKind::Dram, estimate));
            models.push(model);
        }
        Self::with(config, domains, models, cpu_time)
    }

    /// Estimates packages and DRAM whose counters exist but cannot be read, beside ones
    /// that are measured (`packages` and `drams` readable): each, under its own name, gets an
    /// even share of the whole CPU's or the whole memory's model (the work taken as spread
    /// evenly over the sockets).
    pub fn for_unreadable(
        config: &EstimateConfig,
        unreadable: &[Unreadable],
        packages: usize,
        drams: usize,
    ) -> Result<Self> {
        let count = |kind| unreadable.iter().filter(|u| u.kind == kind).count();
        let mut cpu = None;
        let mut ram = None;
        let mut domains = Vec::new();
        let mut models = Vec::new();
        for u in unreadable {
            let (model, estimate, of, what) = match u.kind {
                DomainKind::Package => {
                    if cpu.is_none() {
                        cpu = Some(whole_cpu(config)?);
                    }
                    let (m, e, _) = cpu.as_ref().expect("set above");
                    let of = packages + count(DomainKind::Package);
                    (m.clone(), e.clone(), of, "package's counter")
                }
                DomainKind::Dram => {
                    if ram.is_none() {
                        ram = Some(ram_model(config)?);
                    }
                    let (m, e) = ram.as_ref().expect("set above");
                    (
                        m.clone(),
                        e.clone(),
                        drams + count(DomainKind::Dram),
                        "DRAM counter",
                    )
                }
                _ => continue,
            };
            let share = 1.0 / of.max(1) as f64;
            let mut e = estimate;
            e.method = format!(
                "{}; this {what} cannot be read, so it takes one socket's share (1 of {of}) of \
                 the whole estimate",
                e.method
            );
            domains.push(estimated_domain(&u.name, u.kind, e));
            models.push(PowerModel {
                idle_w: model.idle_w.map(|w| w * share),
                full_w: model.full_w.map(|w| w * share),
                threads: model.threads,
            });
        }
        let cpu_time = cpu.and_then(|(_, _, ct)| ct);
        Self::with(config, domains, models, cpu_time)
    }

    fn with(
        config: &EstimateConfig,
        domains: Vec<Domain>,
        models: Vec<PowerModel>,
        cpu_time: Option<CpuTime>,
    ) -> Result<Self> {
        let n = domains.len();
        Ok(EstimateSource {
            root: config.proc_root.clone(),
            domains,
            models,
            state: Mutex::new(State {
                last_t_ns: monotonic_ns(),
                last_cpu_s: match &cpu_time {
                    Some(ct) => ct.seconds()?,
                    None => 0.0,
                },
                energy: vec![[0.0; 3]; n],
            }),
            cpu_time,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The whole CPU's model, and the CPU time it follows (none for a fixed power).
fn whole_cpu(config: &EstimateConfig) -> Result<(PowerModel, Estimate, Option<CpuTime>)> {
    let info = read_cpuinfo(&config.proc_root)?;
    let ct = match config.cpu_power_w {
        Some(_) => None,
        None => Some(CpuTime::open(
            config.scope,
            &config.proc_root,
            &config.cgroup_root,
        )?),
    };
    let (model, estimate) = cpu_model(config, &info, ct.as_ref());
    Ok((model, estimate, ct))
}

fn estimated_domain(name: &str, kind: DomainKind, estimate: Estimate) -> Domain {
    Domain {
        name: name.into(),
        kind,
        source: "estimate",
        path: PathBuf::new(),
        units_per_joule: UNITS_PER_JOULE,
        max_raw: u64::MAX,
        reading: Reading::Energy,
        label: String::new(),
        update_period_ns: None,
        max_power_w: None,
        estimate: Some(estimate),
    }
}

fn read_cpuinfo(proc_root: &Path) -> Result<CpuInfo> {
    let path = proc_root.join("cpuinfo");
    let text = super::read_small(&path, 8 << 20).map_err(|source| Error::Io { path, source })?;
    Ok(parse_cpuinfo(&text))
}

fn fmt_w(w: [f64; 3]) -> String {
    format!("{:.3} (range {:.3}-{:.3})", w[CENTRAL], w[LOW], w[HIGH])
}

fn cpu_model(
    config: &EstimateConfig,
    info: &CpuInfo,
    cpu_time: Option<&CpuTime>,
) -> (PowerModel, Estimate) {
    let mut inputs: Vec<(String, String)> = Vec::new();
    let user = " (set by user)";
    let threads = config.cpu_threads.unwrap_or(info.threads).max(1);
    inputs.push((
        "cpu_model".into(),
        info.model_name.clone().unwrap_or_else(|| "unknown".into()),
    ));
    inputs.push((
        "threads".into(),
        format!(
            "{threads}{}",
            if config.cpu_threads.is_some() {
                user
            } else {
                " (/proc/cpuinfo)"
            }
        ),
    ));

    if let Some(w) = config.cpu_power_w {
        inputs.push(("power_w".into(), format!("{w}{user}")));
        let estimate = Estimate {
            method: "fixed CPU power set by the user x elapsed time".into(),
            inputs,
        };
        return (PowerModel::constant([w; 3]), estimate);
    }

    let scale = |shares: [f64; 3], w: f64| shares.map(|s| s * w);
    let found = info.model_name.as_deref().and_then(tdp::lookup);
    let (idle_w, full_w, basis) = match (config.cpu_tdp_w, &found) {
        (Some(tdp_w), _) => {
            let total = tdp_w * f64::from(info.sockets);
            inputs.push(("tdp_w".into(), format!("{tdp_w} per socket{user}")));
            inputs.push(("sockets".into(), info.sockets.to_string()));
            (
                scale(TDP_IDLE_SHARE, total),
                scale(TDP_FULL_SHARE, total),
                "TDP",
            )
        }
        (None, Some(m)) if !info.virtualized => {
            let total = m.tdp_w * f64::from(info.sockets);
            inputs.push((
                "tdp_w".into(),
                format!("{} per socket (table: {})", m.tdp_w, m.name),
            ));
            inputs.push(("sockets".into(), info.sockets.to_string()));
            (
                scale(TDP_IDLE_SHARE, total),
                scale(TDP_FULL_SHARE, total),
                "TDP",
            )
        }
        (None, found) => {
            let why = match found {
                Some(m) => format!(
                    "virtual machine: the {} W TDP of {} covers a whole host socket, of which \
                     this machine has an unknown share",
                    m.tdp_w, m.name
                ),
                None => "CPU model not in the TDP table".into(),
            };
            inputs.push(("fallback".into(), why));
            let t = f64::from(threads);
            (
                THREAD_IDLE_W.map(|w| w * t),
                THREAD_FULL_W.map(|w| w * t),
                "per-thread watts",
            )
        }
    };
    inputs.push(("idle_w".into(), fmt_w(idle_w)));
    inputs.push(("full_load_w".into(), fmt_w(full_w)));
    if let Some(ct) = cpu_time {
        inputs.push((
            "cpu_time".into(),
            format!("{} scope: {}", ct.scope().as_str(), ct.describe()),
        ));
    }
    let estimate = Estimate {
        method: format!(
            "{basis} power curve, idle to full load, linear in the CPU time used ({} scope)",
            cpu_time.map_or("process", |c| c.scope().as_str())
        ),
        inputs,
    };
    let model = PowerModel {
        idle_w,
        full_w,
        threads: f64::from(threads),
    };
    (model, estimate)
}

fn ram_model(config: &EstimateConfig) -> Result<(PowerModel, Estimate)> {
    if let Some(w) = config.ram_power_w {
        let estimate = Estimate {
            method: "fixed RAM power set by the user x elapsed time".into(),
            inputs: vec![("power_w".into(), format!("{w} (set by user)"))],
        };
        return Ok((PowerModel::constant([w; 3]), estimate));
    }
    let (gb, from) = match config.ram_gb {
        Some(gb) => (gb, "set by user".to_string()),
        None => {
            let path = config.proc_root.join("meminfo");
            let text = super::read_small(&path, 8 << 20).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let bytes = parse_meminfo_total(&text).ok_or_else(|| Error::Malformed {
                path: path.clone(),
                detail: "no MemTotal line".into(),
            })?;
            (
                bytes as f64 / 1e9,
                format!("MemTotal in {}", path.display()),
            )
        }
    };
    let watts = RAM_W_PER_GB.map(|w| w * gb);
    let estimate = Estimate {
        method: "installed memory x watts per GB x elapsed time".into(),
        inputs: vec![
            ("ram_gb".into(), format!("{gb:.2} ({from})")),
            (
                "w_per_gb".into(),
                format!(
                    "{} (range {}-{}; 3 W per 8 GB as CodeCarbon assumes)",
                    RAM_W_PER_GB[CENTRAL], RAM_W_PER_GB[LOW], RAM_W_PER_GB[HIGH]
                ),
            ),
            ("power_w".into(), fmt_w(watts)),
        ],
    };
    Ok((PowerModel::constant(watts), estimate))
}

impl Source for EstimateSource {
    fn name(&self) -> &'static str {
        "estimate"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn domains(&self) -> &[Domain] {
        &self.domains
    }

    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        let cpu_s = match &self.cpu_time {
            Some(ct) => Some(ct.seconds()?),
            None => None,
        };
        let now = monotonic_ns();
        let mut st = self.lock();
        let elapsed_s = now.saturating_sub(st.last_t_ns) as f64 * 1e-9;
        // CPU time drops in the process scope in a child after fork, whose count starts
        // again; a model must never give back energy, so such a step counts as zero.
        let used_s = cpu_s.map_or(0.0, |c| (c - st.last_cpu_s).max(0.0));
        st.last_t_ns = now;
        if let Some(c) = cpu_s {
            st.last_cpu_s = c;
        }
        for ((energy, model), slot) in st.energy.iter_mut().zip(&self.models).zip(out) {
            for (bound, e) in energy.iter_mut().enumerate() {
                *e += model.energy_j(bound, elapsed_s, used_s);
            }
            *slot = (energy[CENTRAL] * UNITS_PER_JOULE) as u64;
        }
        Ok(())
    }

    fn read_bounds(&self, low: &mut [u64], high: &mut [u64]) {
        let st = self.lock();
        for ((e, l), h) in st.energy.iter().zip(low).zip(high) {
            *l = (e[LOW] * UNITS_PER_JOULE) as u64;
            *h = (e[HIGH] * UNITS_PER_JOULE) as u64;
        }
    }

    fn problems(&self) -> &[Error] {
        &[]
    }

    fn notes(&self) -> &[String] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_idle_power_over_time_plus_the_dynamic_share_of_cpu_time() {
        let m = PowerModel {
            idle_w: [1.0, 2.0, 3.0],
            full_w: [5.0, 10.0, 20.0],
            threads: 4.0,
        };
        // 2 s elapsed, 1 CPU-second used on 4 threads: 2*2 + 8*1/4 = 6 J.
        assert_eq!(m.energy_j(CENTRAL, 2.0, 1.0), 6.0);
        assert_eq!(m.energy_j(LOW, 2.0, 1.0), 3.0);
        assert_eq!(m.energy_j(HIGH, 2.0, 1.0), 10.25);
    }

    #[test]
    fn bounds_bracket_the_central_value() {
        for shares in [
            (TDP_IDLE_SHARE, TDP_FULL_SHARE),
            (THREAD_IDLE_W, THREAD_FULL_W),
        ] {
            let (idle, full) = shares;
            assert!(idle[LOW] < idle[CENTRAL] && idle[CENTRAL] < idle[HIGH]);
            assert!(full[LOW] < full[CENTRAL] && full[CENTRAL] < full[HIGH]);
            assert!((0..3).all(|b| full[b] > idle[b]));
        }
    }
}
