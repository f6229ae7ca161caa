//! Sources of energy readings. Each source discovers its domains once and then reads their raw
//! counters on demand, without allocating.

/// The getters every source has over fields of its own named `root`, `domains`, `problems`
/// and `notes`, inside its `impl Source`: `found_getters!("powercap");`.
macro_rules! found_getters {
    ($name:literal) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn root(&self) -> &std::path::Path {
            &self.root
        }

        fn domains(&self) -> &[crate::domain::Domain] {
            &self.domains
        }

        fn problems(&self) -> &[crate::error::Error] {
            &self.problems
        }

        fn notes(&self) -> &[String] {
            &self.notes
        }
    };
}

pub mod amdsmi;
pub mod estimate;
pub mod hwmon;
pub mod msr;
pub mod nvml;
pub mod perf;
pub mod powercap;
pub mod vendor;

use crate::domain::{Domain, DomainKind};
use crate::error::{Error, Result};
use std::path::Path;

pub trait Source: Send + Sync {
    /// Short name: "powercap", "msr", "nvml", ...
    fn name(&self) -> &'static str;

    /// Where the source looks for its hardware (a directory, a device, a library).
    fn root(&self) -> &Path;

    /// The domains this source can read, in the order `read_raw` fills them.
    fn domains(&self) -> &[Domain];

    /// Reads the raw counter of every domain into `out`, which has `domains().len()` slots.
    fn read_raw(&self, out: &mut [u64]) -> Result<()>;

    /// As `read_raw`, for a source whose domains fail apart (one GPU of several lost): each
    /// domain that cannot be read is handed to `failed` with why, and the others are read all
    /// the same. Err: nothing could be read.
    fn read_each(&self, out: &mut [u64], _failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        self.read_raw(out)
    }

    /// For estimating sources: the low and high bounds of the reading `read_raw` just made,
    /// in the same units, written over the estimated domains' slots. `low` and `high` arrive
    /// holding the totals, which is right for measured domains.
    fn read_bounds(&self, _low: &mut [u64], _high: &mut [u64]) {}

    /// Reading more often than this gains nothing (the hardware refreshes no faster) and may
    /// cost much (an NVML energy read can take milliseconds): the sampler skips the source
    /// until this much time has passed since its last read. Window edges always read.
    fn min_read_interval_ns(&self) -> u64 {
        0
    }

    /// Whether one read takes long enough (a millisecond, as NVML energy reads can) that a
    /// window's edge should not wait for it: callers may then read it on another thread.
    fn slow(&self) -> bool {
        false
    }

    /// Sensors that exist or should exist but cannot be read, with the reason and the fix.
    fn problems(&self) -> &[Error];

    /// Facts worth telling that are not problems (a duplicate interface counted once, ...).
    fn notes(&self) -> &[String];

    /// Packages and DRAM this source found but cannot read (a zone without permission, a
    /// package whose register reads 0 beside others that count): each is missing from the
    /// total unless something estimates it.
    fn unreadable(&self) -> &[Unreadable] {
        &[]
    }

    /// The processes on GPU domain `domain` (an index into `domains()`) and what each used of
    /// it since `since_ns` (CLOCK_MONOTONIC), for attributing the GPU's energy (see
    /// [`crate::gpu_share`]). None: this source knows nothing of processes (not a GPU, the
    /// library lacks the calls, or they failed). Called at a window's end, never on the hot
    /// path: it may allocate, but every count it takes from a library is bounded
    /// ([`MAX_PROCESSES`]).
    fn gpu_processes(&self, _domain: usize, _since_ns: u64) -> Option<GpuProcesses> {
        None
    }
}

/// The most processes (or per-process samples) taken from one GPU's list: far more than a GPU
/// runs (MPS allows 48 clients per GPU), while a garbage count costs at most this many entries.
pub const MAX_PROCESSES: u32 = 4096;

/// What one process used of a GPU since a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessUse {
    /// As the driver sees it: the host's PID namespace.
    pub pid: u32,
    /// Whether it is a compute process on the GPU now (NVML's compute processes; AMD SMI's
    /// list, which holds the KFD's compute processes). A process seen only in samples (one
    /// that has exited, a graphics client) is not.
    pub compute: bool,
    /// The sum of its utilisation samples since the time asked, each the percent (0-100) of
    /// the GPU's SMs (AMD: its compute engine) busy with its work over one sampling period.
    pub sm_sum: f64,
    /// How many samples `sm_sum` adds up.
    pub samples: u32,
}

/// The processes of one GPU, as a source lists them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuProcesses {
    /// One entry per PID.
    pub processes: Vec<ProcessUse>,
    /// Whether the list of compute processes is the whole of it (not cut at
    /// [`MAX_PROCESSES`], nor refused as too long).
    pub complete: bool,
    /// Whether per-process utilisation could be had at all (else every `samples` is 0 because
    /// the library offers none, not because no process was busy).
    pub sampled: bool,
}

impl GpuProcesses {
    /// The entry of `pid`, added (neither computing nor sampled) if it is not there yet.
    pub fn entry(&mut self, pid: u32) -> &mut ProcessUse {
        let i = match self.processes.iter().position(|p| p.pid == pid) {
            Some(i) => i,
            None => {
                self.processes.push(ProcessUse {
                    pid,
                    compute: false,
                    sm_sum: 0.0,
                    samples: 0,
                });
                self.processes.len() - 1
            }
        };
        &mut self.processes[i]
    }
}

/// `read_each` as `read_raw` answers it, for the sources that read domain by domain: the first
/// domain that failed fails the read.
pub(crate) fn first_failure(
    read_each: impl FnOnce(&mut dyn FnMut(usize, Error)) -> Result<()>,
) -> Result<()> {
    let mut first = None;
    read_each(&mut |_, e| {
        first.get_or_insert(e);
    })?;
    first.map_or(Ok(()), Err)
}

/// A domain that exists but cannot be read: its name as a readable one would have had, and
/// its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub name: String,
    pub kind: DomainKind,
}

impl Unreadable {
    /// Records `name` if it is of a kind the total counts on (package or DRAM).
    pub(crate) fn note(list: &mut Vec<Unreadable>, name: &str, kind: DomainKind) {
        let counted = matches!(kind, DomainKind::Package | DomainKind::Dram);
        if counted && !list.iter().any(|u| u.name == name) {
            list.push(Unreadable {
                name: name.to_string(),
                kind,
            });
        }
    }
}

/// What watching slowly refreshing counters (a GPU's, refreshed every ~100 ms) at discovery
/// showed: each one's refresh period, and what a read costs.
pub(crate) struct Refreshes {
    /// Per counter (indexed as given): the median gap between the changes seen.
    pub periods: Vec<Option<u64>>,
    /// The median cost of one read.
    pub read_cost_ns: Option<u64>,
}

impl Refreshes {
    /// Reads each of `counters` (indices below `n`) every half millisecond, through `read`
    /// (None: a failed read), until each has changed four times or `budget_ns` has passed.
    pub(crate) fn watch(
        n: usize,
        counters: &[usize],
        budget_ns: u64,
        mut read: impl FnMut(usize) -> Option<u64>,
    ) -> Refreshes {
        use crate::clock::monotonic_ns;
        let mut last: Vec<Option<u64>> = vec![None; n];
        let mut changes: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut costs: Vec<u64> = Vec::new();
        let start = monotonic_ns();
        while monotonic_ns() - start < budget_ns && counters.iter().any(|&i| changes[i].len() < 4) {
            for &i in counters {
                let t0 = monotonic_ns();
                let value = read(i);
                costs.push(monotonic_ns() - t0);
                let Some(value) = value else { continue };
                if last[i].is_some_and(|l| l != value) {
                    changes[i].push(monotonic_ns());
                }
                last[i] = Some(value);
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        let periods = changes
            .iter()
            .map(|c| {
                let mut gaps: Vec<u64> = c.windows(2).map(|w| w[1] - w[0]).collect();
                gaps.sort_unstable();
                gaps.get(gaps.len() / 2).copied()
            })
            .collect();
        costs.sort_unstable();
        Refreshes {
            periods,
            read_cost_ns: costs.get(costs.len() / 2).copied(),
        }
    }

    /// The shortest refresh period seen (0 where none was): reading faster gains nothing.
    pub(crate) fn shortest_period_ns(&self) -> u64 {
        self.periods.iter().flatten().copied().min().unwrap_or(0)
    }
}

/// Opens a file that must be a regular one (sysfs and procfs attributes are): a FIFO, a device
/// (/dev/zero) or a directory planted where a counter belongs is refused at once rather than
/// hanging a read or feeding it forever. Opened without blocking, so that a FIFO cannot stall
/// the open either.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is {what}", path.display()),
        ));
    }
    Ok(file)
}

/// Reads a small text file (a sysfs attribute, a /proc file) of at most `limit` bytes; more is
/// an error, never a read without end.
pub(crate) fn read_small(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    open_regular(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is longer than {limit} bytes", path.display()),
        ));
    }
    Ok(text)
}

/// Parses the decimal text the kernel writes into sysfs counter files ("12345\n").
/// Allocation-free: it runs on the hot path.
#[inline]
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let digits = &bytes[..end];
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn parses_kernel_counter_text() {
        assert_eq!(parse_u64(b"12345\n"), Some(12345));
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615\n"), Some(u64::MAX));
    }

    #[test]
    fn rejects_what_is_not_a_counter() {
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"\n"), None);
        assert_eq!(parse_u64(b"-5\n"), None);
        assert_eq!(parse_u64(b"12a\n"), None);
        assert_eq!(parse_u64(b" 12\n"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }
}
