//! Windows added up per label, natively: what the history keeps of windows that are not asked
//! to be kept one by one. A window costs a hash lookup and a few additions, and the memory is
//! one entry per label, however many windows close.

use crate::Snapshot;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// One label's windows so far.
#[derive(Debug, Clone, Copy)]
struct Sums {
    count: u64,
    /// Windows whose energy is known (something readable), and their sums.
    known: u64,
    energy_j: f64,
    min_j: f64,
    max_j: f64,
    duration_s: f64,
    first_ns: u64,
    last_ns: u64,
}

impl Sums {
    fn new(t_ns: u64) -> Self {
        Sums {
            count: 0,
            known: 0,
            energy_j: 0.0,
            min_j: f64::INFINITY,
            max_j: f64::NEG_INFINITY,
            duration_s: 0.0,
            first_ns: t_ns,
            last_ns: t_ns,
        }
    }

    fn add(&mut self, energy_j: Option<f64>, start_ns: u64, end_ns: u64) {
        self.count += 1;
        self.duration_s += end_ns.saturating_sub(start_ns) as f64 * 1e-9;
        self.first_ns = self.first_ns.min(start_ns);
        self.last_ns = self.last_ns.max(end_ns);
        if let Some(j) = energy_j {
            self.known += 1;
            self.energy_j += j;
            self.min_j = self.min_j.min(j);
            self.max_j = self.max_j.max(j);
        }
    }
}

/// Edges whose slow sources (a GPU read on another thread) were not known yet when the window
/// closed: added when the tally is drained, off the window's path.
type Pending = (String, Py<Snapshot>, Py<Snapshot>);

struct Inner {
    sums: HashMap<String, Sums>,
    pending: Vec<Pending>,
}

/// Per-label sums of closed windows. Labels past `max_labels` are added up under
/// `overflow_label`, so that a program labelling every window differently cannot grow it.
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

    fn key(&self, inner: &Inner, label: &str) -> String {
        if inner.sums.contains_key(label) || inner.sums.len() < self.max_labels {
            label.to_string()
        } else {
            self.overflow_label.clone()
        }
    }
}

/// Labels are kept to this many bytes (cut at a character boundary), so that the tally's
/// memory is bounded by max_labels whatever the labels are.
const MAX_LABEL_BYTES: usize = 256;

fn bounded(label: &str) -> &str {
    if label.len() <= MAX_LABEL_BYTES {
        return label;
    }
    let mut end = MAX_LABEL_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

#[pymethods]
impl Tally {
    #[new]
    #[pyo3(signature = (max_labels = 1000, overflow_label = "(other labels)"))]
    fn new(max_labels: usize, overflow_label: &str) -> Self {
        Tally {
            inner: Mutex::new(Inner {
                sums: HashMap::new(),
                pending: Vec::new(),
            }),
            max_labels: max_labels.max(1),
            overflow_label: overflow_label.to_string(),
        }
    }

    /// Adds the window between `start` and `end` under `label`.
    pub(crate) fn add(&self, label: &str, start: Bound<'_, Snapshot>, end: Bound<'_, Snapshot>) {
        let label = bounded(label);
        let (s, e) = (start.get(), end.get());
        let known = s.inner.known().zip(e.inner.known());
        let mut inner = self.lock();
        match known {
            Some((a, b)) => {
                let energy = s.meter.total_between(a, b);
                // A label seen before costs no allocation: the common case in a loop.
                if let Some(sums) = inner.sums.get_mut(label) {
                    sums.add(energy, a.t_ns, b.t_ns);
                    return;
                }
                let key = self.key(&inner, label);
                let sums = inner.sums.entry(key).or_insert_with(|| Sums::new(a.t_ns));
                sums.add(energy, a.t_ns, b.t_ns);
            }
            None => inner
                .pending
                .push((label.to_string(), start.unbind(), end.unbind())),
        }
    }

    /// Every label's sums since the last drain, and empties the tally. Windows still waiting
    /// for a slow source are resolved first (without the GIL).
    fn drain(&self, py: Python<'_>) -> Vec<Row> {
        let pending = std::mem::take(&mut self.lock().pending);
        let mut resolved = Vec::with_capacity(pending.len());
        for (label, start, end) in pending {
            let label = bounded(&label).to_string();
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
            let key = self.key(&inner, &label);
            inner
                .sums
                .entry(key)
                .or_insert_with(|| Sums::new(a))
                .add(energy, a, b);
        }
        inner
            .sums
            .drain()
            .map(|(label, s)| {
                let (min, max) = if s.known > 0 {
                    (s.min_j, s.max_j)
                } else {
                    (0.0, 0.0)
                };
                let row = (s.count, s.known, s.energy_j, min, max, s.duration_s);
                (
                    label, row.0, row.1, row.2, row.3, row.4, row.5, s.first_ns, s.last_ns,
                )
            })
            .collect()
    }

    /// Windows added since the last drain.
    fn __len__(&self) -> usize {
        let inner = self.lock();
        inner.sums.values().map(|s| s.count as usize).sum::<usize>() + inner.pending.len()
    }
}
