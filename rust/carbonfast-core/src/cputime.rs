//! CPU time used by the code being measured: this process and its descendants, the container
//! (cgroup), or the whole machine.

mod tree;

use crate::error::{Error, Result};
use crate::source::parse_u64;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
pub(crate) use tree::ProcessTree;

const PROCESS_SOURCES: &str = "getrusage for this process and the children it has waited for, \
     /proc/PID/stat for the descendants still running";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This process and its descendants, running or reaped (the command `carbonfast run`
    /// measures, and whatever it starts).
    Process,
    /// Every process in this process's cgroup (cgroup v2 cpu.stat, or v1 cpuacct).
    Container,
    /// Every process on the machine (/proc/stat).
    Machine,
}

impl Scope {
    pub const NAMES: &'static str = "process, container, machine";
    /// Every scope's name, as settings accept them.
    pub const CHOICES: [&'static str; 3] = ["process", "container", "machine"];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Process => "process",
            Scope::Container => "container",
            Scope::Machine => "machine",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "process" => Ok(Scope::Process),
            "container" => Ok(Scope::Container),
            "machine" => Ok(Scope::Machine),
            other => Err(format!(
                "unknown scope {other:?}; accepted: {}",
                Scope::NAMES
            )),
        }
    }
}

enum Reader {
    Process(Box<ProcessTree>),
    /// cpu.stat, `usage_usec` line.
    CgroupV2(File),
    /// cpuacct.usage, nanoseconds.
    CgroupV1(File),
    /// /proc/stat, first line, clock ticks.
    ProcStat(File, f64),
}

pub struct CpuTime {
    scope: Scope,
    reader: Reader,
    path: Option<PathBuf>,
}

impl CpuTime {
    /// Opens the counter for `scope`. `proc_root` and `cgroup_root` are normally /proc and
    /// /sys/fs/cgroup.
    pub fn open(scope: Scope, proc_root: &Path, cgroup_root: &Path) -> Result<Self> {
        let (reader, path) = match scope {
            Scope::Process => (Reader::Process(Box::new(ProcessTree::new(proc_root))), None),
            Scope::Machine => {
                let path = proc_root.join("stat");
                // SAFETY: sysconf has no preconditions.
                let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
                (Reader::ProcStat(open(&path)?, ticks), Some(path))
            }
            Scope::Container => {
                let (v1, path) = cgroup_cpu_file(proc_root, cgroup_root)?;
                let file = open(&path)?;
                let reader = if v1 {
                    Reader::CgroupV1(file)
                } else {
                    Reader::CgroupV2(file)
                };
                (reader, Some(path))
            }
        };
        let ct = CpuTime {
            scope,
            reader,
            path,
        };
        ct.seconds()?;
        Ok(ct)
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Where the CPU time comes from, for the estimate's inputs.
    pub fn describe(&self) -> String {
        match (&self.reader, &self.path) {
            (Reader::Process(_), _) => PROCESS_SOURCES.into(),
            (_, Some(p)) => p.display().to_string(),
            (_, None) => String::new(),
        }
    }

    /// Cumulative CPU seconds in this scope.
    pub fn seconds(&self) -> Result<f64> {
        let mut buf = [0u8; 1024];
        let malformed = |what: &str| Error::Malformed {
            path: self.path.clone().unwrap_or_default(),
            detail: format!("expected {what}"),
        };
        match &self.reader {
            Reader::Process(tree) => Ok(tree.seconds()),
            Reader::CgroupV1(f) => {
                let n = self.pread(f, &mut buf)?;
                let ns = parse_u64(&buf[..n]).ok_or_else(|| malformed("nanoseconds"))?;
                Ok(ns as f64 * 1e-9)
            }
            Reader::CgroupV2(f) => {
                let n = self.pread(f, &mut buf)?;
                let usec = field(&buf[..n], b"usage_usec")
                    .ok_or_else(|| malformed("a usage_usec line"))?;
                Ok(usec as f64 * 1e-6)
            }
            Reader::ProcStat(f, ticks) => {
                let n = self.pread(f, &mut buf)?;
                let busy = proc_stat_busy_ticks(&buf[..n])
                    .ok_or_else(|| malformed("a first line 'cpu  user nice system ...'"))?;
                Ok(busy as f64 / ticks)
            }
        }
    }

    fn pread(&self, f: &File, buf: &mut [u8]) -> Result<usize> {
        f.read_at(buf, 0).map_err(|source| Error::Io {
            path: self.path.clone().unwrap_or_default(),
            source,
        })
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            path: path.to_path_buf(),
            why: "needed for CPU time in this scope".into(),
            fix: "choose another scope (process, container, machine)".into(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// The value of `key value` in a cgroup stat file.
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(b" ")?;
        parse_u64(rest)
    })
}

/// user + nice + system + irq + softirq + steal of the aggregate "cpu" line of /proc/stat.
fn proc_stat_busy_ticks(text: &[u8]) -> Option<u64> {
    let line = text.split(|&b| b == b'\n').next()?;
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    if fields.next()? != b"cpu" {
        return None;
    }
    let v: Vec<u64> = fields.take(8).map(parse_u64).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = v[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// Finds this process's cgroup CPU counter: v1 cpuacct where the cpuacct controller is
/// mounted (hybrid systems too), else v2 cpu.stat. Returns (is_v1, path).
fn cgroup_cpu_file(proc_root: &Path, cgroup_root: &Path) -> Result<(bool, PathBuf)> {
    let own = proc_root.join("self").join("cgroup");
    let text = crate::source::read_small(&own, 8 << 20).map_err(|e| Error::Io {
        path: own.clone(),
        source: e,
    })?;
    let mut v2_path = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "cpuacct") {
            for mount in [controllers, "cpuacct", "cpu,cpuacct"] {
                let candidate = cgroup_root.join(mount).join(rel).join("cpuacct.usage");
                if candidate.exists() {
                    return Ok((true, candidate));
                }
            }
        } else if controllers.is_empty() {
            v2_path = Some(cgroup_root.join(rel).join("cpu.stat"));
        }
    }
    match v2_path {
        Some(p) if p.exists() => Ok((false, p)),
        _ => Err(Error::Missing {
            path: cgroup_root.to_path_buf(),
            why: format!(
                "no cgroup CPU counter found for the cgroups in {}",
                own.display()
            ),
            fix: "use the process or machine scope".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_busy_ticks_only() {
        let text = b"cpu  100 5 50 9000 30 2 3 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(proc_stat_busy_ticks(text), Some(100 + 5 + 50 + 2 + 3 + 7));
        assert_eq!(proc_stat_busy_ticks(b"intr 1 2 3\n"), None);
    }

    #[test]
    fn cgroup_v2_usage_usec() {
        let text = b"usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(field(text, b"usage_usec"), Some(123_456));
        assert_eq!(field(text, b"nr_periods"), None);
    }

    #[test]
    fn process_scope_grows_with_work() {
        let ct = CpuTime::open(
            Scope::Process,
            Path::new("/proc"),
            Path::new("/nonexistent"),
        )
        .unwrap();
        let a = ct.seconds().unwrap();
        // Work until this thread's own CPU clock says 50 ms ran, however long a busy machine
        // takes to give them.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let start = crate::clock::thread_cpu_ns();
        while crate::clock::thread_cpu_ns() - start < 50_000_000 && t.elapsed().as_secs() < 10 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(ct.seconds().unwrap() - a > 0.03);
    }

    #[test]
    fn scope_names_parse_and_reject_with_the_accepted_list() {
        assert_eq!("container".parse::<Scope>(), Ok(Scope::Container));
        let err = "host".parse::<Scope>().unwrap_err();
        assert!(err.contains("process, container, machine"), "{err}");
    }
}
