//! Windows added up per label, natively: what the history keeps of windows that are not asked
//! to be kept one by one. A window costs a hash lookup and a few additions, and the memory is
//! one entry per label, however many windows close.

use crate::Snapshot;
use carbonfast_core::tally::{bounded, LabelTally};
use pyo3::prelude::*;
use std::sync::Mutex;

/// Edges whose slow sources (a GPU read on another thread) were not known yet when the window
/// closed: added when the tally is drained, off the window's path.
type Pending = (String, Py<Snapshot>, Py<Snapshot>);

struct Inner {
    sums: LabelTally,
    pending: Vec<Pending>,
}

/// Per-label sums of closed windows (the core's LabelTally), with the windows whose edges
/// wait for a slow source.
#[pyclass(frozen, module = "carbonfast._native")]
pub(crate) struct Tally {
    inner: Mutex<Inner>,
    #[pyo3(get)]
    max_labels: usize,
    #[pyo3(get)]
    overflow_label: String,
}

/// A label's sums as the history stores them: (label, count, windows with known energy,
/// energy J, min J, max J, duration s, first start ns, last end ns).
type Row = (String, u64, u64, f64, f64, f64, f64, u64, u64);

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Tally {
    #[new]
    #[pyo3(signature = (max_labels = 1000, overflow_label = "(other labels)"))]
    fn new(max_labels: usize, overflow_label: &str) -> Self {
        let sums = LabelTally::new(max_labels, overflow_label);
        Tally {
            max_labels: sums.max_labels(),
            overflow_label: sums.overflow_label().to_string(),
            inner: Mutex::new(Inner {
                sums,
                pending: Vec::new(),
            }),
        }
    }

    /// Adds the window between `start` and `end` under `label`.
    pub(crate) fn add(&self, label: &str, start: Bound<'_, Snapshot>, end: Bound<'_, Snapshot>) {
        let (s, e) = (start.get(), end.get());
        match s.inner.known().zip(e.inner.known()) {
            Some((a, b)) => {
                let energy = s.meter.total_between(a, b);
                self.lock().sums.add(label, energy, a.t_ns, b.t_ns);
            }
            None => {
                self.lock()
                    .pending
                    .push((bounded(label).to_string(), start.unbind(), end.unbind()))
            }
        }
    }

    /// Every label's sums since the last drain, and empties the tally. Windows still waiting
    /// for a slow source are resolved first (without the GIL).
    fn drain(&self, py: Python<'_>) -> Vec<Row> {
        let pending = std::mem::take(&mut self.lock().pending);
        let mut resolved = Vec::with_capacity(pending.len());
        for (label, start, end) in pending {
            let (s, e) = (start.get(), end.get());
            let (Ok(a), Ok(b)) = (s.resolved(py), e.resolved(py)) else {
                // The slow source failed: the window still counts, its energy unknown.
                resolved.push((label, None, s.inner.t_ns(), e.inner.t_ns()));
                continue;
            };
            resolved.push((label, s.meter.total_between(a, b), a.t_ns, b.t_ns));
        }
        let mut inner = self.lock();
        for (label, energy, a, b) in resolved {
            inner.sums.add(&label, energy, a, b);
        }
        inner
            .sums
            .drain()
            .into_iter()
            .map(|(label, s)| {
                (
                    label,
                    s.count,
                    s.known,
                    s.energy_j,
                    s.min_j,
                    s.max_j,
                    s.duration_s,
                    s.first_ns,
                    s.last_ns,
                )
            })
            .collect()
    }

    /// Windows added since the last drain.
    fn __len__(&self) -> usize {
        let inner = self.lock();
        inner.sums.windows() as usize + inner.pending.len()
    }
}
