//! Stopping or pausing a slow sampler does not wait for its next deadline: `carbonfast run
//! --sample-hz 1 -- true` would otherwise take a second to exit.

use carbonfast_core::source::Source;
use carbonfast_core::{Domain, DomainKind, Error, Meter, Reading, Result, Sampler, SamplerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One counter that never moves: what is tested is the thread, not the readings.
struct Still {
    domains: Vec<Domain>,
}

impl Source for Still {
    fn name(&self) -> &'static str {
        "still"
    }
    fn root(&self) -> &Path {
        Path::new("/fake")
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        out[0] = 0;
        Ok(())
    }
    fn problems(&self) -> &[Error] {
        &[]
    }
    fn notes(&self) -> &[String] {
        &[]
    }
}

/// A sampler at one sample every two seconds, given time to fall asleep.
fn slow_sampler() -> Sampler {
    let domain = Domain {
        name: "package-0".into(),
        kind: DomainKind::Package,
        source: "still",
        path: PathBuf::from("/fake"),
        units_per_joule: 1e6,
        max_raw: u64::MAX,
        reading: Reading::Energy,
        label: String::new(),
        update_period_ns: None,
        max_power_w: None,
        estimate: None,
    };
    let meter = Arc::new(
        Meter::new(vec![Box::new(Still {
            domains: vec![domain],
        })])
        .unwrap(),
    );
    let config = SamplerConfig {
        sample_hz: Some(0.5),
        ..SamplerConfig::default()
    };
    let s = Sampler::start(meter, &config).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s
}

// Well under the 2 s period, generous for a busy machine.
const PROMPT: Duration = Duration::from_millis(500);

#[test]
fn dropping_a_slow_sampler_returns_at_once() {
    let s = slow_sampler();
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < PROMPT, "stopping took {:?}", t.elapsed());
}

#[test]
fn pausing_a_slow_sampler_returns_at_once() {
    let s = slow_sampler();
    let t = Instant::now();
    s.pause();
    assert!(t.elapsed() < PROMPT, "pausing took {:?}", t.elapsed());
    s.resume();
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < PROMPT, "stopping took {:?}", t.elapsed());
}
