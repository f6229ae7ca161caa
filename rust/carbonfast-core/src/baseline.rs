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
