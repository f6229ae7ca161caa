//! The floor under a measurement window: the bare preads it needs, timed without any of the
//! meter's bookkeeping. Benchmarks compare a window's cost against this.

use crate::clock::monotonic_ns;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Opens `paths` and times `rounds` rounds of one pread (and parse) per path. Returns the
/// nanoseconds of each round.
pub fn time_raw_preads(paths: &[PathBuf], rounds: usize) -> io::Result<Vec<u64>> {
    let files = paths
        .iter()
        .map(File::open)
        .collect::<io::Result<Vec<_>>>()?;
    let mut buf = [0u8; 32];
    let mut sink = 0u64;
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = monotonic_ns();
        for f in &files {
            let n = f.read_at(&mut buf, 0)?;
            sink = sink.wrapping_add(crate::source::parse_u64(&buf[..n]).unwrap_or(0));
        }
        out.push(monotonic_ns() - t0);
    }
    std::hint::black_box(sink);
    Ok(out)
}

/// Runs a thread that only sleeps to absolute deadlines at `hz` for `seconds`, as the sampler
/// does, and returns (its CPU time, the wall time) in ns: the platform's cost of waking up,
/// below which no sleeping sampler can go.
pub fn sleep_loop_cpu(hz: f64, seconds: f64) -> (u64, u64) {
    std::thread::spawn(move || {
        let period = (1e9 / hz) as u64;
        let n = (hz * seconds) as u64;
        let cpu0 = thread_cpu_ns();
        let t0 = monotonic_ns();
        let mut deadline = t0;
        for _ in 0..n {
            deadline += period;
            crate::sampler::sleep_until(deadline);
        }
        (thread_cpu_ns() - cpu0, monotonic_ns() - t0)
    })
    .join()
    .unwrap_or((0, 1))
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
