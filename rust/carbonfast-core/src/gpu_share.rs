//! Whose is a GPU's energy: the share of one GPU's energy that belongs to a scope's processes
//! (the command `carbonfast run` started, the current process), from the GPU's process list
//! and per-process utilisation samples. Pure: the sources gather the facts
//! ([`GpuProcesses`]), this module only weighs them.
//!
//! The rules, in order:
//! - the scope's processes are the only ones known on the GPU (computing now or sampled): all
//!   of its energy is theirs, exactly where the list is complete;
//! - the samples show some work: split by the sum of the SM utilisation samples, with a range
//!   that allows each process's sum to be off by one full sample either way (a sampling
//!   period's work missed or miscounted), so that it narrows as samples accumulate;
//! - no sample shows any work: split by the number of processes, range 0..1;
//! - no process at all: nothing is charged, range 0..1 (a process may have come and gone
//!   unseen).
//!
//! Utilisation is not power: a memory-bound kernel keeps SMs less busy for the same draw, and
//! the idle draw is split with the work. The range says how far the samples can be trusted,
//! not how far SM time stands for energy.

use crate::source::{GpuProcesses, ProcessUse};

/// What each process's sum of samples may be off by: one sample of full utilisation.
const SAMPLE_SLACK: f64 = 100.0;

/// A scope's share of one GPU's energy.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuShare {
    /// The fraction of the GPU's energy that is the scope's, 0..=1.
    pub share: f64,
    /// Bounds the true share lies within: low <= share <= high, both in 0..=1.
    pub low: f64,
    pub high: f64,
    /// How the share was found, in words.
    pub method: String,
}

impl GpuShare {
    fn new(share: f64, low: f64, high: f64, method: String) -> Self {
        let share = clamp01(share);
        GpuShare {
            share,
            low: clamp01(low).min(share),
            high: clamp01(high).max(share),
            method,
        }
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The share of the GPU described by `gpu` that belongs to the processes `scope` (PIDs in the
/// driver's namespace; order and repeats do not matter).
pub fn share(gpu: &GpuProcesses, scope: &[u32]) -> GpuShare {
    let mut scope: Vec<u32> = scope.to_vec();
    scope.sort_unstable();
    let ours = |p: &ProcessUse| scope.binary_search(&p.pid).is_ok();
    // Processes that count: computing now, or seen in a sample.
    let known: Vec<&ProcessUse> = gpu
        .processes
        .iter()
        .filter(|p| p.compute || p.samples > 0)
        .collect();
    let (mine, others): (Vec<&ProcessUse>, Vec<&ProcessUse>) =
        known.iter().copied().partition(|p| ours(p));
    let cut = if gpu.complete {
        ""
    } else {
        ", but the process list was cut short: range 0..1"
    };
    if known.is_empty() {
        return GpuShare::new(
            0.0,
            0.0,
            1.0,
            "no process on it now and no samples: none of it charged, range 0..1".into(),
        );
    }
    if others.is_empty() {
        let method = if mine.len() == 1 {
            format!("the only compute process on it{cut}")
        } else {
            format!("its {} processes are the only ones on it{cut}", mine.len())
        };
        let low = if gpu.complete { 1.0 } else { 0.0 };
        return GpuShare::new(1.0, low, 1.0, method);
    }
    let sum = |ps: &[&ProcessUse]| ps.iter().map(|p| p.sm_sum.max(0.0)).sum::<f64>();
    let (a, b) = (sum(&mine), sum(&others));
    if a + b > 0.0 {
        let samples: u64 = known.iter().map(|p| u64::from(p.samples)).sum();
        let sampled = known.iter().filter(|p| p.samples > 0).count();
        let (na, nb) = (mine.len() as f64, others.len() as f64);
        // Least: ours each a sample short, the others each a sample over; most: the reverse.
        let a_low = (a - SAMPLE_SLACK * na).max(0.0);
        let low = a_low / (a_low + b + SAMPLE_SLACK * nb);
        let a_high = a + SAMPLE_SLACK * na;
        let b_low = (b - SAMPLE_SLACK * nb).max(0.0);
        let high = if a_high > 0.0 {
            a_high / (a_high + b_low)
        } else {
            0.0
        };
        let low = if gpu.complete { low } else { 0.0 };
        let method = format!(
            "SM utilisation: {} of {}{}",
            plural(samples as usize, "sample", "samples"),
            plural(sampled, "process", "processes"),
            if gpu.complete {
                ""
            } else {
                ", the process list cut short"
            }
        );
        return GpuShare::new(a / (a + b), low, high, method);
    }
    let why = if gpu.sampled {
        "no samples"
    } else {
        "no per-process samples from this driver"
    };
    GpuShare::new(
        mine.len() as f64 / known.len() as f64,
        0.0,
        1.0,
        format!(
            "{why}: split by process count ({} of {}), range 0..1",
            mine.len(),
            known.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn process(pid: u32, compute: bool, sm: &[u32]) -> ProcessUse {
        ProcessUse {
            pid,
            compute,
            sm_sum: sm.iter().map(|&s| f64::from(s)).sum(),
            samples: sm.len() as u32,
        }
    }

    fn gpu(processes: Vec<ProcessUse>) -> GpuProcesses {
        GpuProcesses {
            processes,
            complete: true,
            sampled: true,
        }
    }

    #[test]
    fn the_only_compute_process_has_it_all() {
        let g = gpu(vec![process(7, true, &[])]);
        let s = share(&g, &[7, 8]);
        assert_eq!((s.share, s.low, s.high), (1.0, 1.0, 1.0));
        assert_eq!(s.method, "the only compute process on it");
        let g = gpu(vec![process(7, true, &[50]), process(8, true, &[])]);
        assert_eq!(
            share(&g, &[7, 8]).method,
            "its 2 processes are the only ones on it"
        );
        // A list cut short cannot tell that no one else is there.
        let mut g = gpu(vec![process(7, true, &[])]);
        g.complete = false;
        let s = share(&g, &[7]);
        assert_eq!((s.share, s.low, s.high), (1.0, 0.0, 1.0));
    }

    #[test]
    fn others_split_it_by_sm_samples_with_a_range() {
        let g = gpu(vec![
            process(1, true, &[60, 60, 60]),
            process(2, true, &[20, 20, 20]),
        ]);
        let s = share(&g, &[1]);
        assert_eq!(s.share, 0.75);
        assert!(s.low < 0.75 && s.high > 0.75, "{s:?}");
        assert_eq!(s.method, "SM utilisation: 6 samples of 2 processes");
        // More samples, the same proportions: a narrower range.
        let many = gpu(vec![
            process(1, true, &[60; 300]),
            process(2, true, &[20; 300]),
        ]);
        let t = share(&many, &[1]);
        assert!((t.share - 0.75).abs() < 1e-12);
        assert!(t.high - t.low < (s.high - s.low) / 10.0, "{t:?} vs {s:?}");
        // An exited process seen only in samples still takes its part.
        let g = gpu(vec![process(1, true, &[50]), process(9, false, &[50])]);
        assert_eq!(share(&g, &[1]).share, 0.5);
    }

    #[test]
    fn without_samples_processes_split_it_evenly_within_0_to_1() {
        let g = gpu(vec![process(1, true, &[]), process(2, true, &[])]);
        let s = share(&g, &[1]);
        assert_eq!((s.share, s.low, s.high), (0.5, 0.0, 1.0));
        assert_eq!(
            s.method,
            "no samples: split by process count (1 of 2), range 0..1"
        );
        let mut g = g;
        g.sampled = false;
        assert!(share(&g, &[2])
            .method
            .starts_with("no per-process samples from this driver"));
    }

    #[test]
    fn nobody_on_it_charges_nothing_within_0_to_1() {
        let s = share(&gpu(vec![]), &[1]);
        assert_eq!((s.share, s.low, s.high), (0.0, 0.0, 1.0));
        // A scope with no process there, beside one that computes, gets none of it.
        let s = share(&gpu(vec![process(2, true, &[])]), &[1]);
        assert_eq!(s.share, 0.0);
    }

    fn arb_gpu() -> impl Strategy<Value = GpuProcesses> {
        let proc_ = (
            any::<bool>(),
            prop::collection::vec(0u32..=100, 0..20),
            any::<bool>(),
        );
        (
            prop::collection::vec(proc_, 1..12),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(ps, complete, sampled)| GpuProcesses {
                processes: ps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (compute, sm, _))| {
                        // Every process counts: computing, or seen in a sample.
                        let compute = compute || sm.is_empty();
                        process(100 + i as u32, compute, &sm)
                    })
                    .collect(),
                complete,
                sampled,
            })
    }

    proptest! {
        #[test]
        fn the_share_lies_within_its_range_within_0_and_1(
            g in arb_gpu(),
            pick in prop::collection::vec(any::<bool>(), 12),
        ) {
            let scope: Vec<u32> = g
                .processes
                .iter()
                .zip(&pick)
                .filter(|(_, &p)| p)
                .map(|(p, _)| p.pid)
                .collect();
            let s = share(&g, &scope);
            prop_assert!(0.0 <= s.low && s.low <= s.share, "{:?}", s);
            prop_assert!(s.share <= s.high && s.high <= 1.0, "{:?}", s);
            prop_assert!(!s.method.is_empty());
        }

        #[test]
        fn disjoint_scopes_covering_every_process_add_up_to_1(
            g in arb_gpu(),
            owner in prop::collection::vec(0usize..4, 12),
        ) {
            let mut scopes: Vec<Vec<u32>> = vec![Vec::new(); 4];
            for (p, &o) in g.processes.iter().zip(&owner) {
                scopes[o].push(p.pid);
            }
            let total: f64 = scopes.iter().map(|s| share(&g, s).share).sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "{} for {:?}", total, scopes);
        }
    }
}
