//! Wrap-aware accumulation of a hardware energy counter.
//!
//! Energy counters are free-running registers that count up and wrap to zero after their
//! largest value. A `Counter` turns the sequence of raw readings into a monotonic total, as
//! long as it is fed often enough that the counter never advances by a full range between two
//! readings (the sampler's keep-alive guarantees that).

/// Accumulates raw readings of one counter whose values run from 0 to `max_value` inclusive
/// and then wrap to 0.
///
/// Linux powercap reports `max_energy_range_uj`, the largest value `energy_uj` takes; a 32-bit
/// MSR has `max_value = u32::MAX`. Totals are kept in the counter's own raw unit, so they are
/// exact integers; scaling to joules happens once, at the edge.
#[derive(Debug, Clone)]
pub struct Counter {
    modulus: u128,
    last: Option<u64>,
    total: u64,
    wraps: u64,
    anomalies: u64,
    uncertain: u64,
    /// An unexplained reading, kept to tell a glitch from a reset by the next one.
    suspect: Option<u64>,
}

impl Counter {
    /// A counter whose raw values run from 0 to `max_value` inclusive.
    pub fn new(max_value: u64) -> Self {
        Counter {
            modulus: u128::from(max_value) + 1,
            last: None,
            total: 0,
            wraps: 0,
            anomalies: 0,
            uncertain: 0,
            suspect: None,
        }
    }

    /// Feeds one raw reading and returns the total accumulated since the first reading.
    ///
    /// A reading below the previous one is a wrap: the counter passed `max_value` once.
    #[inline]
    pub fn update(&mut self, raw: u64) -> u64 {
        if let Some(last) = self.last {
            let step = if raw >= last {
                u128::from(raw - last)
            } else {
                self.wraps += 1;
                self.modulus - u128::from(last) + u128::from(raw)
            };
            // A step is below the modulus by construction, so it fits in u64 whenever the
            // modulus does (2^64 only for a full 64-bit counter, where raw - last already fits).
            self.total = self.total.wrapping_add(step as u64);
        }
        self.last = Some(raw);
        self.total
    }

    /// As `update`, for a reading that can be checked: `max_step` is the most the counter can
    /// have advanced since the previous reading (its maximum power times the time between
    /// them). A reading it cannot explain is noted and never counted:
    /// - above `max_value` (no such value exists): ignored, the previous one kept;
    /// - a step, wrap included, larger than `max_step` (a reset, a counter that went back, a
    ///   garbage value): not counted, and up to `max_unseen` of energy recorded as uncertain.
    ///   The next reading decides: near the last good one, the bad one was a glitch and the
    ///   count goes on from the good one; near the bad one, the counter was reset and the
    ///   count goes on from there.
    ///
    /// And where `max_unseen` (the most the counter can have advanced in the time itself,
    /// without the allowance for a refresh held back) reaches the counter's range, a whole
    /// wrap may have passed unseen (the reader was stopped): the step is counted, and each
    /// range it could hide is recorded as uncertain.
    pub fn update_checked(&mut self, raw: u64, max_step: u64, max_unseen: u64) -> u64 {
        let Some(last) = self.last else {
            return self.update(raw);
        };
        if raw > self.max_value() {
            self.anomalies += 1;
            return self.total;
        }
        let step = |from: u64| {
            if raw >= from {
                u128::from(raw - from)
            } else {
                self.modulus - u128::from(from) + u128::from(raw)
            }
        };
        if step(last) > u128::from(max_step) {
            // The same bad answer read again (a read before the counter's next refresh, or a
            // value stuck for a while) tells nothing new: only a reading that differs decides.
            if self.suspect == Some(raw) {
                return self.total;
            }
            // One bad answer (a glitch), or a counter that really started again (a reset)?
            // The next reading tells: near the last good one, or near this one.
            match self.suspect.take() {
                Some(s) if step(s) <= u128::from(max_step) => {
                    self.last = Some(s); // it was a reset: go on from there
                }
                _ => {
                    self.anomalies += 1;
                    self.uncertain = self.uncertain.saturating_add(max_unseen);
                    self.suspect = Some(raw);
                    return self.total;
                }
            }
            return self.update_checked(raw, max_step, max_unseen);
        }
        self.suspect = None;
        let hidden = u128::from(max_unseen).saturating_sub(step(last)) / self.modulus;
        if hidden > 0 {
            self.uncertain = self
                .uncertain
                .saturating_add(u64::try_from(hidden * self.modulus).unwrap_or(u64::MAX));
        }
        self.update(raw)
    }

    /// Readings `update_checked` could not explain.
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Energy, in raw units, that may be missing from the total: up to the plausible step of
    /// each unexplained reading, and each range a starved reader may have missed.
    pub fn uncertain(&self) -> u64 {
        self.uncertain
    }

    /// Total accumulated since the first reading, in the counter's raw unit.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many times the counter wrapped.
    pub fn wraps(&self) -> u64 {
        self.wraps
    }

    /// The largest raw value the counter takes.
    pub fn max_value(&self) -> u64 {
        (self.modulus - 1) as u64
    }

    /// The last raw reading fed in, if any.
    pub fn last_raw(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_reading_is_the_baseline() {
        let mut c = Counter::new(1000);
        assert_eq!(c.update(700), 0);
        assert_eq!(c.update(750), 50);
        assert_eq!(c.wraps(), 0);
    }

    #[test]
    fn a_wrap_counts_the_values_up_to_max_and_back_from_zero() {
        let mut c = Counter::new(999);
        c.update(990);
        // 990 -> 999 is 9, 999 -> 0 is 1, 0 -> 5 is 5.
        assert_eq!(c.update(5), 15);
        assert_eq!(c.wraps(), 1);
    }

    #[test]
    fn a_full_64_bit_counter_wraps_without_overflow() {
        let mut c = Counter::new(u64::MAX);
        c.update(u64::MAX - 1);
        assert_eq!(c.update(3), 5);
        assert_eq!(c.wraps(), 1);
    }

    #[test]
    fn thirty_two_bit_msr_wrap() {
        let mut c = Counter::new(u64::from(u32::MAX));
        c.update(0xFFFF_FF00);
        assert_eq!(c.update(0x10), 0x110);
    }

    #[test]
    fn a_counter_that_goes_back_is_not_a_wrap() {
        let mut c = Counter::new(262_143_328_850);
        c.update_checked(5_000_000, 10, 0);
        // Back by 1000 uJ: as a wrap that would be 262 kJ.
        assert_eq!(c.update_checked(4_999_000, 1_500_000, 1_000), 0);
        assert_eq!((c.wraps(), c.anomalies(), c.uncertain()), (0, 1, 1_000));
        // It goes on from there (a reset, not a glitch: the next reading is near it alone).
        assert_eq!(c.update_checked(4_999_500, 1_000, 0), 500);
    }

    #[test]
    fn a_glitch_is_skipped_and_the_count_goes_on_from_the_last_good_reading() {
        let mut c = Counter::new(u64::MAX);
        c.update_checked(1_000_000, 10, 0);
        assert_eq!(c.update_checked(0, 5_000, 0), 0); // one bad answer
        assert_eq!(c.update_checked(1_002_000, 5_000, 0), 2_000);
        assert_eq!(c.anomalies(), 1);
    }

    #[test]
    fn a_bad_reading_read_twice_is_not_taken_for_a_reset() {
        let mut c = Counter::new(262_143_328_850);
        c.update_checked(5_000_000, 10, 0);
        assert_eq!(c.update_checked(4_999_000, 1_500, 1_000), 0);
        // Read again before the counter refreshed: the same value, no new evidence.
        assert_eq!(c.update_checked(4_999_000, 1_500, 1_000), 0);
        // Near the last good reading: the bad one was a glitch, counted from the good one.
        assert_eq!(c.update_checked(5_001_000, 1_500, 1_000), 1_000);
        assert_eq!((c.anomalies(), c.uncertain()), (1, 1_000));
        // A real reset still shows as one once the counter moves on from where it restarted.
        let mut r = Counter::new(u64::MAX);
        r.update_checked(5_000_000, 10, 0);
        r.update_checked(100, 1_500, 0);
        r.update_checked(100, 1_500, 0);
        assert_eq!(r.update_checked(600, 1_500, 0), 500);
    }

    #[test]
    fn a_value_past_the_range_is_ignored() {
        let mut c = Counter::new(1000);
        c.update_checked(10, 5, 0);
        assert_eq!(c.update_checked(5_000, 1_000_000, 0), 0);
        assert_eq!(c.update_checked(20, 1_000_000, 0), 10);
        assert_eq!(c.anomalies(), 1);
    }

    #[test]
    fn a_starved_reader_says_how_much_may_be_missing() {
        let mut c = Counter::new(999);
        c.update_checked(100, 10, 0);
        // 1.5 ranges could have passed; only the half range shows.
        assert_eq!(c.update_checked(600, 1_500, 1_500), 500);
        assert_eq!(c.uncertain(), 1_000);
        assert_eq!(c.anomalies(), 0);
    }

    proptest! {
        /// Whatever the readings, a checked counter never adds more than the plausible step
        /// per reading, and a step it can explain is counted exactly.
        #[test]
        fn checked_steps_are_bounded(
            max_value in 1u64..1_000_000,
            readings in proptest::collection::vec((0u64..2_000_000, 0u64..2_000_000), 1..100),
        ) {
            let mut c = Counter::new(max_value);
            let mut prev = c.update_checked(readings[0].0 % (max_value + 1), 0, 0);
            for &(raw, max_step) in &readings[1..] {
                let t = c.update_checked(raw, max_step, max_step);
                prop_assert!(t >= prev && t - prev <= max_step);
                prev = t;
            }
        }

        /// For any readings whose steps stay below the range, the total is the exact sum of
        /// the steps, however many wraps they contain.
        #[test]
        fn total_is_the_exact_sum_of_steps(
            max_value in 1u64..=u64::from(u32::MAX) * 1_000_000,
            start_frac in 0.0f64..=1.0,
            step_fracs in proptest::collection::vec(0.0f64..1.0, 0..200),
        ) {
            let modulus = u128::from(max_value) + 1;
            let start = ((max_value as f64) * start_frac) as u64;
            let mut c = Counter::new(max_value);
            c.update(start);
            let mut raw = u128::from(start);
            let mut expected: u128 = 0;
            let mut expected_wraps = 0u64;
            for f in step_fracs {
                let step = (((modulus - 1) as f64) * f) as u128;
                prop_assume!(step < modulus);
                let next = raw + step;
                if next >= modulus {
                    expected_wraps += 1;
                }
                raw = next % modulus;
                expected += step;
                prop_assert_eq!(u128::from(c.update(raw as u64)), expected);
            }
            prop_assert_eq!(c.wraps(), expected_wraps);
        }

        #[test]
        fn total_never_decreases(
            max_value in 1u64..1_000_000,
            readings in proptest::collection::vec(0u64..1_000_000, 1..100),
        ) {
            let mut c = Counter::new(max_value);
            let mut prev = 0;
            for r in readings {
                let t = c.update(r % (max_value + 1));
                prop_assert!(t >= prev);
                prev = t;
            }
        }
    }
}
