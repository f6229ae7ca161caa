//! Whose energy: the share of a machine's CPU and memory energy that belongs to one scope (a
//! process, its tree, a thread, a cgroup), from CPU time.
//!
//! A package's RAPL counter holds everything that ran on it. The scope's share of it is the
//! scope's CPU time over the CPU time of everything that ran on the machine's CPUs in the same
//! window (idle power included: the scopes of a machine add up to its energy, as Scaphandre
//! and the Software Carbon Intensity spec count it). Both are read at the kernel's real
//! resolution where it offers one:
//!
//! - the scope's CPU time from the kernel's per-process and per-thread CPU clocks
//!   (`clock_gettime`, nanoseconds), getrusage for reaped children (microseconds), cgroup v2
//!   `cpu.stat` (`usage_usec`);
//! - the machine's busy time per CPU from /proc/schedstat (`rq_cpu_time`, nanoseconds), else
//!   from /proc/stat's per-CPU lines, which count in clock ticks (10 ms): then the share carries
//!   the range those ticks leave, which over a short window is wide, and says so.
//!
//! Every CPU of the machine counts: the scope's time is not known per package, so on a
//! machine of several sockets the share is of all of them.

use crate::cputime::ProcessTree;
use crate::error::{Error, Result};
use crate::source::{parse_u64, read_small};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Whose CPU time a share follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeKind {
    /// This process, every thread of it (its CPU clock).
    Process,
    /// This process and its descendants, running or reaped.
    Tree,
    /// The thread that opened the attribution (its CPU clock).
    Thread,
    /// The children this process has reaped (getrusage): `carbonfast run`'s command and all it
    /// started, once waited for.
    Children,
    /// A cgroup v2 (a SLURM job's, a container's): None finds this process's own, or the SLURM
    /// job's above it.
    Cgroup(Option<PathBuf>),
}

impl ScopeKind {
    pub const NAMES: &'static str = "process, tree, thread, children, cgroup, cgroup:PATH";

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        Ok(match text {
            "process" => ScopeKind::Process,
            "tree" => ScopeKind::Tree,
            "thread" => ScopeKind::Thread,
            "children" => ScopeKind::Children,
            "cgroup" => ScopeKind::Cgroup(None),
            other => match other.strip_prefix("cgroup:") {
                Some(path) if !path.is_empty() => ScopeKind::Cgroup(Some(path.into())),
                _ => {
                    return Err(format!(
                        "unknown attribution scope {other:?}; accepted: {}",
                        Self::NAMES
                    ))
                }
            },
        })
    }
}

/// Cumulative CPU time at one instant: the scope's, and the machine's busy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    pub scope_ns: u64,
    pub busy_ns: u64,
}

/// The scope's share of the machine's CPU time between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// None where no CPU time was used at all in the window (nothing to share by).
    pub share: Option<f64>,
    /// The range the true share lies in, from the counters' resolution.
    pub low: f64,
    pub high: f64,
    /// CPU seconds of the scope and of the machine in the window.
    pub scope_s: f64,
    pub busy_s: f64,
}

enum ScopeClock {
    Clock(libc::clockid_t),
    Tree(Box<ProcessTree>),
    Children,
    Cgroup(File, PathBuf),
}

enum Busy {
    /// /proc/schedstat: per CPU, `rq_cpu_time` in ns.
    Schedstat(PathBuf),
    /// /proc/stat: per CPU, busy clock ticks.
    ProcStat(PathBuf, f64),
}

/// Reads a scope's CPU time and the machine's beside it.
pub struct Attribution {
    scope: ScopeClock,
    busy: Busy,
    /// The machine's busy-time file, kept open, and the buffer it is read into (grown once).
    busy_file: File,
    buf: std::sync::Mutex<Vec<u8>>,
    cpus: usize,
    label: String,
}

impl Attribution {
    /// Opens the scope's clock and the machine's busy time (`proc_root` normally /proc,
    /// `cgroup_root` /sys/fs/cgroup), and takes a first reading to check both.
    pub fn open(kind: &ScopeKind, proc_root: &Path, cgroup_root: &Path) -> Result<Self> {
        let (scope, label) = match kind {
            ScopeKind::Process => (
                ScopeClock::Clock(libc::CLOCK_PROCESS_CPUTIME_ID),
                format!("process {}", std::process::id()),
            ),
            ScopeKind::Thread => {
                let mut clock: libc::clockid_t = 0;
                // SAFETY: pthread_self names the calling thread; `clock` is writable.
                let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
                if rc != 0 {
                    return Err(io_error("the thread's CPU clock", rc));
                }
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                (ScopeClock::Clock(clock), format!("thread {tid}"))
            }
            ScopeKind::Tree => (
                ScopeClock::Tree(Box::new(ProcessTree::new(proc_root))),
                format!("process tree of {}", std::process::id()),
            ),
            ScopeKind::Children => (ScopeClock::Children, "reaped children".to_string()),
            ScopeKind::Cgroup(path) => {
                let dir = match path {
                    Some(p) if p.is_absolute() && p.starts_with(cgroup_root) => p.clone(),
                    Some(p) => cgroup_root.join(p.strip_prefix("/").unwrap_or(p)),
                    None => own_cgroup(proc_root, cgroup_root)?,
                };
                let stat = dir.join("cpu.stat");
                let file = crate::source::open_regular(&stat).map_err(|e| Error::Missing {
                    path: stat.clone(),
                    why: format!("no cgroup v2 CPU counter there ({e})"),
                    fix: "name a cgroup v2 directory (`--cgroup /sys/fs/cgroup/...`), or use \
                          another scope"
                        .into(),
                })?;
                let shown = dir.strip_prefix(cgroup_root).unwrap_or(&dir);
                (
                    ScopeClock::Cgroup(file, stat),
                    format!("cgroup /{}", shown.display()),
                )
            }
        };
        let (busy, cpus) = machine_busy(proc_root)?;
        let path = match &busy {
            Busy::Schedstat(p) | Busy::ProcStat(p, _) => p.clone(),
        };
        let busy_file = crate::source::open_regular(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let a = Attribution {
            scope,
            busy,
            busy_file,
            buf: std::sync::Mutex::new(Vec::with_capacity(4096)),
            cpus,
            label,
        };
        a.read()?;
        Ok(a)
    }

    /// The scope in words: "process 4312", "cgroup /slurm/job_1234".
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Names the scope otherwise (`carbonfast run`: "process tree of 4312", its command).
    pub fn set_label(&mut self, label: String) {
        self.label = label;
    }

    /// How the CPU times are read, in words.
    pub fn method(&self) -> String {
        let scope = match &self.scope {
            ScopeClock::Clock(_) => "the kernel's CPU clock (ns)",
            ScopeClock::Tree(_) => {
                "the CPU clock of this process (ns), getrusage for reaped children (µs) and \
                 /proc/PID/stat for running descendants (10 ms ticks)"
            }
            ScopeClock::Children => "getrusage of the reaped command tree (µs)",
            ScopeClock::Cgroup(..) => "cgroup cpu.stat usage_usec (µs)",
        };
        let busy = match &self.busy {
            Busy::Schedstat(_) => "/proc/schedstat busy time per CPU (ns)",
            Busy::ProcStat(..) => {
                "/proc/stat busy time per CPU (10 ms ticks: /proc/schedstat is not available)"
            }
        };
        format!("CPU-time share: the scope's CPU time from {scope}, over all {} CPUs' busy time from {busy}; idle power shared in the same proportion", self.cpus)
    }

    /// The scope's CPU time and the machine's, now.
    pub fn read(&self) -> Result<Reading> {
        Ok(Reading {
            scope_ns: self.scope_ns()?,
            busy_ns: self.busy_ns()?,
        })
    }

    fn scope_ns(&self) -> Result<u64> {
        match &self.scope {
            ScopeClock::Clock(clock) => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is writable; the clock id came from the kernel.
                let rc = unsafe { libc::clock_gettime(*clock, &mut ts) };
                if rc != 0 {
                    return Err(io_error(&self.label, rc));
                }
                Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
            }
            ScopeClock::Tree(tree) => Ok((tree.seconds() * 1e9) as u64),
            ScopeClock::Children => Ok(rusage_children_ns()),
            ScopeClock::Cgroup(file, path) => {
                let mut buf = [0u8; 1024];
                let n = file.read_at(&mut buf, 0).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                let usec = cgroup_usage_usec(&buf[..n]).ok_or_else(|| Error::Malformed {
                    path: path.clone(),
                    detail: "expected a usage_usec line".into(),
                })?;
                Ok(usec.saturating_mul(1000))
            }
        }
    }

    fn busy_ns(&self) -> Result<u64> {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let path = match &self.busy {
            Busy::Schedstat(p) | Busy::ProcStat(p, _) => p,
        };
        read_whole(&self.busy_file, &mut buf).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let text = std::str::from_utf8(&buf).map_err(|_| malformed(path, "text"))?;
        match &self.busy {
            Busy::Schedstat(_) => {
                schedstat_busy_ns(text).ok_or_else(|| malformed(path, "cpuN lines"))
            }
            Busy::ProcStat(_, tick_ns) => {
                let ticks =
                    proc_stat_cpu_busy_ticks(text).ok_or_else(|| malformed(path, "cpuN lines"))?;
                Ok((ticks as f64 * tick_ns) as u64)
            }
        }
    }

    /// The scope's share between readings `a` and `b`, with its range.
    pub fn share(&self, a: &Reading, b: &Reading) -> Share {
        let scope_err = match &self.scope {
            // Running descendants are read in ticks, at each edge.
            ScopeClock::Tree(_) => 2.0 * tick_ns(),
            ScopeClock::Children | ScopeClock::Cgroup(..) => 2_000.0,
            ScopeClock::Clock(_) => 0.0,
        };
        let busy_err = match &self.busy {
            Busy::Schedstat(_) => 0.0,
            Busy::ProcStat(_, tick) => 2.0 * tick * self.cpus as f64,
        };
        share_between(a, b, scope_err, busy_err)
    }
}

/// The share of `scope` in `busy` between two readings, given how far each CPU time may be off
/// (ns); clamped to [0, 1], its range around it.
pub fn share_between(a: &Reading, b: &Reading, scope_err_ns: f64, busy_err_ns: f64) -> Share {
    let scope = b.scope_ns.saturating_sub(a.scope_ns) as f64;
    let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64;
    let (scope_s, busy_s) = (scope * 1e-9, busy * 1e-9);
    if busy <= 0.0 && scope <= 0.0 {
        return Share {
            share: None,
            low: 0.0,
            high: 1.0,
            scope_s,
            busy_s,
        };
    }
    // The scope ran within the machine's busy time: a machine reading behind the scope's (the
    // two are read an instant apart) does not make the share exceed 1.
    let share = (scope / busy.max(scope)).clamp(0.0, 1.0);
    let low = ((scope - scope_err_ns).max(0.0) / (busy + busy_err_ns).max(1.0)).clamp(0.0, share);
    let high_den = (busy - busy_err_ns).max(scope - scope_err_ns).max(1.0);
    let high = ((scope + scope_err_ns) / high_den).clamp(share, 1.0);
    Share {
        share: Some(share),
        low,
        high,
        scope_s,
        busy_s,
    }
}

fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1e9 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

fn io_error(what: &str, rc: i32) -> Error {
    Error::Io {
        path: PathBuf::from(what),
        source: std::io::Error::from_raw_os_error(if rc > 0 { rc } else { libc::EINVAL }),
    }
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        detail: format!("expected {what}"),
    }
}

fn rusage_children_ns() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// Where the machine's busy time comes from, and how many CPUs it counts.
fn machine_busy(proc_root: &Path) -> Result<(Busy, usize)> {
    let schedstat = proc_root.join("schedstat");
    if let Ok(text) = read_small(&schedstat, 4 << 20) {
        if schedstat_busy_ns(&text).is_some() {
            let cpus = cpu_lines(&text).count();
            return Ok((Busy::Schedstat(schedstat), cpus));
        }
    }
    let stat = proc_root.join("stat");
    let text = read_small(&stat, 4 << 20).map_err(|e| Error::Missing {
        path: stat.clone(),
        why: format!("needed for the machine's CPU time ({e})"),
        fix: "mount procfs, or turn attribution off".into(),
    })?;
    if proc_stat_cpu_busy_ticks(&text).is_none() {
        return Err(malformed(&stat, "cpuN lines"));
    }
    let cpus = cpu_lines(&text).count();
    Ok((Busy::ProcStat(stat, tick_ns()), cpus))
}

/// Reads all of `file` from its start into `buf` (procfs files are generated at each read; a
/// machine of many CPUs makes them long): at most 4 MiB.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= 4 << 20 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "longer than 4 MiB",
                ));
            }
            buf.reserve(buf.capacity().max(4096));
        }
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        let n = file.read_at(&mut buf[len..], len as u64)?;
        buf.truncate(len + n);
        if n == 0 {
            return Ok(());
        }
    }
}

/// The lines of one CPU each ("cpu0 ...", not the aggregate "cpu ..."), their fields after the
/// name.
fn cpu_lines(text: &str) -> impl Iterator<Item = std::str::SplitAsciiWhitespace<'_>> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let n = fields.next()?.strip_prefix("cpu")?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(fields)
    })
}

/// The sum over CPUs of /proc/schedstat's `rq_cpu_time` (the 7th number of each cpuN line,
/// version 15 and later: time spent running tasks, in ns).
fn schedstat_busy_ns(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for mut fields in cpu_lines(text) {
        let v = parse_u64(fields.nth(6)?.as_bytes())?;
        total = total.saturating_add(v);
        any = true;
    }
    any.then_some(total)
}

/// The sum over CPUs of /proc/stat's busy ticks: user, nice, system, irq, softirq (idle,
/// iowait and steal, time the machine's CPUs did not run here, left out).
fn proc_stat_cpu_busy_ticks(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for fields in cpu_lines(text) {
        let mut v = [0u64; 7];
        for (slot, f) in v.iter_mut().zip(fields) {
            *slot = parse_u64(f.as_bytes())?;
        }
        // user nice system idle iowait irq softirq
        let busy = v[0] + v[1] + v[2] + v[5] + v[6];
        total = total.saturating_add(busy);
        any = true;
    }
    any.then_some(total)
}

fn cgroup_usage_usec(text: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(b"usage_usec ")?;
        parse_u64(rest)
    })
}

/// This process's cgroup v2 directory, or the SLURM job's above it (`.../job_1234`), where
/// the process runs in one.
fn own_cgroup(proc_root: &Path, cgroup_root: &Path) -> Result<PathBuf> {
    let own = proc_root.join("self").join("cgroup");
    let text = read_small(&own, 1 << 20).map_err(|e| Error::Io {
        path: own.clone(),
        source: e,
    })?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Error::Missing {
            path: own.clone(),
            why: "this process is in no cgroup v2 (a cgroup v1 machine?)".into(),
            fix: "name the cgroup with --cgroup PATH, or use another scope".into(),
        })?;
    let rel = rel.trim().trim_start_matches('/');
    // A SLURM job's steps and tasks sit below its job_N directory: the job is the scope.
    let parts: Vec<&str> = rel.split('/').collect();
    let job = parts.iter().rposition(|p| {
        p.strip_prefix("job_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    let chosen = match job {
        Some(i) if std::env::var_os("SLURM_JOB_ID").is_some() => parts[..=i].join("/"),
        _ => rel.to_string(),
    };
    Ok(cgroup_root.join(chosen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SCHEDSTAT: &str = "version 15\ntimestamp 4295\ncpu0 0 0 10 5 3 2 1000000 200 7\n\
        domain0 3 0 0 0 0\ncpu1 0 0 10 5 3 2 3000000 200 7\n";

    #[test]
    fn schedstat_adds_up_every_cpus_running_time() {
        assert_eq!(schedstat_busy_ns(SCHEDSTAT), Some(4_000_000));
        assert_eq!(cpu_lines(SCHEDSTAT).count(), 2);
        assert_eq!(schedstat_busy_ns("version 15\n"), None);
        assert_eq!(schedstat_busy_ns("cpu0 1 2\n"), None);
    }

    #[test]
    fn proc_stat_counts_busy_ticks_of_each_cpu_not_idle_or_steal() {
        let text =
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 1 5 900 30 2 3 70 0 0\ncpu1 1 0 1 0 0 0 0 0 0 0\n";
        assert_eq!(proc_stat_cpu_busy_ticks(text), Some(10 + 1 + 5 + 2 + 3 + 2));
    }

    #[test]
    fn scopes_parse_and_reject_with_the_accepted_list() {
        assert_eq!(ScopeKind::parse("tree"), Ok(ScopeKind::Tree));
        assert_eq!(
            ScopeKind::parse("cgroup:/slurm/job_7"),
            Ok(ScopeKind::Cgroup(Some("/slurm/job_7".into())))
        );
        let err = ScopeKind::parse("cgroup:").unwrap_err();
        assert!(err.contains(ScopeKind::NAMES), "{err}");
    }

    #[test]
    fn a_scope_alone_gets_everything_and_nothing_used_is_unknown() {
        let a = Reading::default();
        let b = Reading {
            scope_ns: 5,
            busy_ns: 5,
        };
        assert_eq!(share_between(&a, &b, 0.0, 0.0).share, Some(1.0));
        let none = share_between(&a, &a, 0.0, 0.0);
        assert_eq!((none.share, none.low, none.high), (None, 0.0, 1.0));
    }

    #[test]
    fn the_process_scope_follows_this_process_cpu_clock() {
        let root = Path::new("/proc");
        let Ok(a) = Attribution::open(&ScopeKind::Process, root, Path::new("/sys/fs/cgroup"))
        else {
            return; // no procfs here
        };
        let r0 = a.read().unwrap();
        // Work until the process's own CPU clock says 20 ms ran (a busy machine may take a
        // while to give them), and check the scope saw them.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let used = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is writable.
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let start = used();
        while used() - start < 20_000_000 && t.elapsed().as_secs() < 10 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let r1 = a.read().unwrap();
        assert!(r1.scope_ns - r0.scope_ns >= 20_000_000);
    }

    proptest! {
        #[test]
        fn the_share_lies_in_its_range_and_in_zero_to_one(
            s0 in 0u64..1 << 50, ds in 0u64..1 << 40,
            b0 in 0u64..1 << 50, db in 0u64..1 << 40,
            es in 0.0f64..1e9, eb in 0.0f64..1e10,
        ) {
            let a = Reading { scope_ns: s0, busy_ns: b0 };
            let b = Reading { scope_ns: s0 + ds, busy_ns: b0 + db };
            let sh = share_between(&a, &b, es, eb);
            prop_assert!(0.0 <= sh.low && sh.high <= 1.0 && sh.low <= sh.high);
            if let Some(v) = sh.share {
                prop_assert!(sh.low <= v && v <= sh.high);
            }
        }

        #[test]
        fn disjoint_scopes_covering_the_machine_add_up_to_one(
            parts in proptest::collection::vec(1u64..1 << 40, 1..8),
        ) {
            let busy: u64 = parts.iter().sum();
            let total: f64 = parts
                .iter()
                .map(|&p| {
                    let b = Reading { scope_ns: p, busy_ns: busy };
                    share_between(&Reading::default(), &b, 0.0, 0.0).share.unwrap()
                })
                .sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
        }
    }
}
