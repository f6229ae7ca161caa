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
}

impl Counter {
    /// A counter whose raw values run from 0 to `max_value` inclusive.
    pub fn new(max_value: u64) -> Self {
        Counter {
            modulus: u128::from(max_value) + 1,
            last: None,
            total: 0,
            wraps: 0,
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

    proptest! {
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
