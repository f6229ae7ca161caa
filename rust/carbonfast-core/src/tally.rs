//! Windows added up per label: what the history keeps of windows that are not asked to be
//! kept one by one. A window costs a hash lookup and a few additions, and the memory is one
//! entry per label, however many windows close: labels past `max_labels` are added up under
//! an overflow label, and each label is cut to MAX_LABEL_BYTES.

use std::collections::HashMap;

/// Labels are kept to this many bytes (cut at a character boundary), so that the tally's
/// memory is bounded by its label count whatever the labels are.
pub const MAX_LABEL_BYTES: usize = 256;

/// One label's windows so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    pub count: u64,
    /// Windows whose energy is known (something readable), and their sums.
    pub known: u64,
    pub energy_j: f64,
    /// The least and most energy of one known window; 0 where none is known.
    pub min_j: f64,
    pub max_j: f64,
    pub duration_s: f64,
    pub first_ns: u64,
    pub last_ns: u64,
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

    /// As stored: min and max 0 where no window's energy was known.
    fn finished(mut self) -> Self {
        if self.known == 0 {
            (self.min_j, self.max_j) = (0.0, 0.0);
        }
        self
    }
}

/// Per-label sums of closed windows.
#[derive(Debug)]
pub struct LabelTally {
    sums: HashMap<String, Sums>,
    max_labels: usize,
    overflow_label: String,
}

impl LabelTally {
    pub fn new(max_labels: usize, overflow_label: &str) -> Self {
        LabelTally {
            sums: HashMap::new(),
            max_labels: max_labels.max(1),
            overflow_label: bounded(overflow_label).to_string(),
        }
    }

    pub fn max_labels(&self) -> usize {
        self.max_labels
    }

    pub fn overflow_label(&self) -> &str {
        &self.overflow_label
    }

    /// Adds a window under `label` (cut to MAX_LABEL_BYTES; the overflow label once
    /// `max_labels` others are held). A label seen before costs no allocation.
    pub fn add(&mut self, label: &str, energy_j: Option<f64>, start_ns: u64, end_ns: u64) {
        let label = bounded(label);
        if let Some(sums) = self.sums.get_mut(label) {
            sums.add(energy_j, start_ns, end_ns);
            return;
        }
        let key = if self.sums.len() < self.max_labels {
            label.to_string()
        } else {
            self.overflow_label.clone()
        };
        self.sums
            .entry(key)
            .or_insert_with(|| Sums::new(start_ns))
            .add(energy_j, start_ns, end_ns);
    }

    /// Windows added since the last drain.
    pub fn windows(&self) -> u64 {
        self.sums.values().map(|s| s.count).sum()
    }

    /// Every label's sums, and empties the tally.
    pub fn drain(&mut self) -> Vec<(String, Sums)> {
        self.sums
            .drain()
            .map(|(label, s)| (label, s.finished()))
            .collect()
    }
}

/// `label` cut to MAX_LABEL_BYTES at a character boundary.
pub fn bounded(label: &str) -> &str {
    if label.len() <= MAX_LABEL_BYTES {
        return label;
    }
    let mut end = MAX_LABEL_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(t: &mut LabelTally) -> HashMap<String, Sums> {
        t.drain().into_iter().collect()
    }

    #[test]
    fn windows_add_up_per_label_with_unknown_energy_counted_apart() {
        let mut t = LabelTally::new(10, "(other labels)");
        t.add("step", Some(2.0), 100, 1_000_000_100);
        t.add("step", None, 2_000_000_000, 2_500_000_000);
        t.add("step", Some(5.0), 3_000_000_000, 3_000_000_001);
        t.add("eval", None, 50, 60);
        assert_eq!(t.windows(), 4);
        let got = drained(&mut t);
        let step = got["step"];
        assert_eq!((step.count, step.known), (3, 2));
        assert_eq!((step.energy_j, step.min_j, step.max_j), (7.0, 2.0, 5.0));
        assert!((step.duration_s - 1.500_000_001).abs() < 1e-12);
        assert_eq!((step.first_ns, step.last_ns), (100, 3_000_000_001));
        // Nothing known: no bounds, rather than infinities.
        let eval = got["eval"];
        assert_eq!((eval.known, eval.min_j, eval.max_j), (0, 0.0, 0.0));
        assert_eq!(t.windows(), 0);
        assert!(t.drain().is_empty());
    }

    #[test]
    fn labels_past_the_limit_go_under_the_overflow_label() {
        let mut t = LabelTally::new(2, "(other labels)");
        for (i, label) in ["a", "b", "c", "d", "a"].iter().enumerate() {
            t.add(label, Some(1.0), i as u64, i as u64 + 1);
        }
        let got = drained(&mut t);
        // Two labels and the overflow: the limit counts labels held, the overflow beyond it.
        assert_eq!(got["a"].count, 2);
        assert_eq!(got["b"].count, 1);
        assert_eq!(got["(other labels)"].count, 2);
        assert_eq!(got.len(), 3);
        assert_eq!(LabelTally::new(0, "x").max_labels(), 1);
    }

    #[test]
    fn long_labels_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LABEL_BYTES); // two bytes each
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_LABEL_BYTES && long.starts_with(cut));
        assert_eq!(bounded("short"), "short");
        let mut t = LabelTally::new(10, "(other labels)");
        t.add(&format!("{long}-1"), Some(1.0), 0, 1);
        t.add(&format!("{long}-2"), Some(1.0), 0, 1);
        // Both cut to the same prefix: one label.
        assert_eq!(t.drain().len(), 1);
    }
}
