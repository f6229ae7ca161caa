//! RAPL through the perf_event "power" PMU (Linux 3.14 on Intel, 5.8 on AMD).
//!
//! The PMU describes itself in sysfs: its `type` number, a `cpumask` with one CPU per package,
//! and one `events/energy-*` file per domain with its `.scale` (joules per count) and `.unit`.
//! Each (event, CPU) pair becomes one counting perf event whose fd stays open; the kernel keeps
//! the count in 64 bits, unfolding the 32-bit MSR wraps itself.

use super::{Source, Unreadable};
use crate::domain::{Domain, DomainKind, Reading};
use crate::error::{Error, Result};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_ROOT: &str = "/sys/bus/event_source/devices/power";

/// An open perf counter.
pub trait PerfCounter: Send + Sync {
    /// The counter's current value, in the event's raw units.
    fn read_count(&self) -> io::Result<u64>;
}

/// Opens perf counters; the real one calls perf_event_open, tests pass their own.
pub trait PerfOpener: Send + Sync {
    /// Opens a counting event of PMU `pmu_type` with `config` on `cpu`, for every process.
    fn open(&self, pmu_type: u32, config: u64, cpu: i32) -> io::Result<Box<dyn PerfCounter>>;
}

/// Opens counters with the perf_event_open system call.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyscallOpener;

impl PerfOpener for SyscallOpener {
    fn open(&self, pmu_type: u32, config: u64, cpu: i32) -> io::Result<Box<dyn PerfCounter>> {
        sys::open(pmu_type, config, cpu).map(|c| Box::new(c) as Box<dyn PerfCounter>)
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use super::PerfCounter;
    use std::io;
    use std::mem::{offset_of, size_of};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `struct perf_event_attr` as of PERF_ATTR_SIZE_VER5 (Linux 4.1), the fields this source
    /// sets named and the rest zero. The kernel accepts any size from VER0 up; a size larger
    /// than it knows is accepted when the extra bytes are zero, so this works on every kernel
    /// with the power PMU. Zero is what a counting RAPL event needs: enabled at open, no
    /// sampling, no exclude_* bits (the power PMU rejects them), read_format 0 so that read
    /// returns the bare 64-bit count.
    #[repr(C)]
    #[derive(Default)]
    struct PerfEventAttr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period_or_freq: u64,
        sample_type: u64,
        read_format: u64,
        /// disabled, inherit, pinned, exclusive, exclude_*, ... bit-fields.
        flags: u64,
        wakeup_events_or_watermark: u32,
        bp_type: u32,
        config1: u64,
        config2: u64,
        branch_sample_type: u64,
        sample_regs_user: u64,
        sample_stack_user: u32,
        clockid: i32,
        sample_regs_intr: u64,
        aux_watermark: u32,
        sample_max_stack: u16,
        reserved_2: u16,
    }

    const PERF_ATTR_SIZE_VER5: usize = 112;
    const _: () = assert!(size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER5);
    const _: () = assert!(offset_of!(PerfEventAttr, size) == 4);
    const _: () = assert!(offset_of!(PerfEventAttr, config) == 8);
    const _: () = assert!(offset_of!(PerfEventAttr, flags) == 40);
    const _: () = assert!(offset_of!(PerfEventAttr, config1) == 56);
    const _: () = assert!(offset_of!(PerfEventAttr, sample_regs_intr) == 96);

    /// include/uapi/linux/perf_event.h; libc does not export it.
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

    pub(super) struct FdCounter {
        fd: OwnedFd,
    }

    pub(super) fn open(pmu_type: u32, config: u64, cpu: i32) -> io::Result<FdCounter> {
        let attr = PerfEventAttr {
            type_: pmu_type,
            size: PERF_ATTR_SIZE_VER5 as u32,
            config,
            ..Default::default()
        };
        let pid: libc::pid_t = -1; // every process on `cpu`
        let group_fd: libc::c_int = -1;
        // SAFETY: `attr` is a live, initialised perf_event_attr whose `size` matches its
        // layout (checked at compile time above); the kernel only reads it during the call.
        // The other arguments are plain integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                pid,
                cpu as libc::c_int,
                group_fd,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success perf_event_open returns a new file descriptor that nothing else
        // owns; OwnedFd takes it and closes it once.
        let fd = unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) };
        Ok(FdCounter { fd })
    }

    impl PerfCounter for FdCounter {
        #[inline]
        fn read_count(&self) -> io::Result<u64> {
            let mut buf = [0u8; 8];
            // perf fds have no file position (pread fails with ESPIPE), so read it is; the
            // kernel answers each read with the current count.
            // SAFETY: `buf` is a writable stack buffer of exactly the length passed, and the
            // fd is open for as long as `self` lives.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n as usize != buf.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(u64::from_ne_bytes(buf))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use super::PerfCounter;
    use std::io;

    pub(super) enum FdCounter {}

    pub(super) fn open(_pmu_type: u32, _config: u64, _cpu: i32) -> io::Result<FdCounter> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    impl PerfCounter for FdCounter {
        fn read_count(&self) -> io::Result<u64> {
            match *self {}
        }
    }
}

/// The power PMU's events carbonfast reads, in the order a package's domains are listed.
const EVENTS: &[(&str, DomainKind)] = &[
    ("energy-pkg", DomainKind::Package),
    ("energy-cores", DomainKind::Core),
    ("energy-gpu", DomainKind::Uncore),
    ("energy-ram", DomainKind::Dram),
    ("energy-psys", DomainKind::Psys),
];

/// One event as sysfs describes it.
#[derive(Debug, Clone, PartialEq)]
struct EventSpec {
    file: PathBuf,
    kind: DomainKind,
    config: u64,
    /// Joules per count.
    scale: f64,
}

pub struct PerfSource {
    root: PathBuf,
    domains: Vec<Domain>,
    counters: Vec<Box<dyn PerfCounter>>,
    problems: Vec<Error>,
    notes: Vec<String>,
    unreadable: Vec<Unreadable>,
}

impl std::fmt::Debug for PerfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfSource")
            .field("root", &self.root)
            .field("domains", &self.domains)
            .field("problems", &self.problems)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

impl PerfSource {
    /// Discovers the power PMU at `pmu_root` and opens its energy events with perf_event_open.
    /// Never fails: what cannot be used is recorded in `problems()` with its reason and fix.
    pub fn discover(pmu_root: &Path) -> Self {
        Self::discover_with(pmu_root, &SyscallOpener)
    }

    /// As `discover`, opening counters with `opener`.
    pub fn discover_with(pmu_root: &Path, opener: &dyn PerfOpener) -> Self {
        let mut src = PerfSource {
            root: pmu_root.to_path_buf(),
            domains: Vec::new(),
            counters: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            unreadable: Vec::new(),
        };
        let type_path = pmu_root.join("type");
        let pmu_type = match super::read_small(&type_path, 64) {
            Ok(text) => match super::parse_u64(text.as_bytes()).and_then(|t| u32::try_from(t).ok())
            {
                Some(t) => t,
                None => {
                    src.problems.push(Error::Malformed {
                        path: type_path,
                        detail: "expected the PMU's type number".into(),
                    });
                    return src;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                src.problems.push(Error::Missing {
                    path: pmu_root.to_path_buf(),
                    why: "the kernel has no RAPL perf PMU (\"power\") here".into(),
                    fix: "the power PMU needs a kernel with RAPL perf support (Linux 3.14 or \
                          later on Intel, 5.8 or later on AMD) running on bare metal; virtual \
                          machines usually hide RAPL, so measure on the host or accept \
                          estimates"
                        .into(),
                });
                return src;
            }
            Err(e) => {
                src.problems.push(Error::Io {
                    path: type_path,
                    source: e,
                });
                return src;
            }
        };

        let mask_path = pmu_root.join("cpumask");
        let cpus = match super::read_small(&mask_path, 65536) {
            Ok(text) => match parse_cpu_list(&text) {
                Some(cpus) if !cpus.is_empty() => cpus,
                _ => {
                    src.problems.push(Error::Malformed {
                        path: mask_path,
                        detail: format!("expected a CPU list like \"0,36\", found {text:?}"),
                    });
                    return src;
                }
            },
            Err(e) => {
                src.problems.push(Error::Io {
                    path: mask_path,
                    source: e,
                });
                return src;
            }
        };

        let mut specs = Vec::new();
        for &(event, kind) in EVENTS {
            match read_event(&pmu_root.join("events"), event, kind) {
                Ok(Some(spec)) => specs.push(spec),
                Ok(None) => {}
                Err(e) => src.problems.push(e),
            }
        }
        if specs.is_empty() {
            if !src.problems.is_empty() {
                return src;
            }
            src.problems.push(Error::Missing {
                path: pmu_root.join("events"),
                why: "the power PMU lists no energy event".into(),
                fix: "this CPU's RAPL is not supported by the running kernel's power PMU; try \
                      a newer kernel, or the powercap or msr sources"
                    .into(),
            });
            return src;
        }

        for (package, &cpu) in cpus.iter().enumerate() {
            for spec in &specs {
                // psys is one platform-wide counter: opened on every CPU it would be counted
                // once per package.
                if spec.kind == DomainKind::Psys && package > 0 {
                    continue;
                }
                let name = match spec.kind {
                    DomainKind::Psys => "psys".to_string(),
                    kind => format!("{kind}-{package}"),
                };
                match opener.open(pmu_type, spec.config, cpu) {
                    Ok(counter) => {
                        if let Err(e) = counter.read_count() {
                            src.problems.push(Error::Io {
                                path: spec.file.clone(),
                                source: e,
                            });
                            Unreadable::note(&mut src.unreadable, &name, spec.kind);
                            continue;
                        }
                        src.domains.push(Domain {
                            name,
                            kind: spec.kind,
                            source: "perf",
                            path: spec.file.clone(),
                            units_per_joule: 1.0 / spec.scale,
                            // The kernel accumulates the 32-bit register into a 64-bit count;
                            // in 2^-32 J units it wraps only after 2^32 J, months at full
                            // power, and the Counter takes that wrap like any other.
                            max_raw: u64::MAX,
                            reading: Reading::Energy,
                            label: String::new(),
                            update_period_ns: None,
                            max_power_w: None,
                            estimate: None,
                        });
                        src.counters.push(counter);
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        // Permission is decided for the process, not per event: every other
                        // open would fail the same way.
                        src.problems.push(Error::PermissionDenied {
                            path: spec.file.clone(),
                            fix: permission_fix(),
                        });
                        return src;
                    }
                    Err(e) => {
                        src.problems.push(Error::Io {
                            path: spec.file.clone(),
                            source: e,
                        });
                        Unreadable::note(&mut src.unreadable, &name, spec.kind);
                    }
                }
            }
        }
        src.drop_still_counters();
        for spec in &specs {
            if !is_power_of_two(spec.scale) {
                src.notes.push(format!(
                    "{}: scale {:e} J per count is not a power of two, so joules are rounded \
                     to about 1 part in 10^16",
                    spec.file.display(),
                    spec.scale
                ));
            }
        }
        src
    }
}

impl PerfSource {
    /// A hypervisor can expose the power PMU while the energy registers behind it read 0: the
    /// events open and count nothing, which would be a silent zero. A live RAPL counter ticks
    /// about every millisecond, so one still at 0 after `PATIENCE` is dead. Live counters cost
    /// the wait for their first tick, about a millisecond, once.
    fn drop_still_counters(&mut self) {
        const PATIENCE: Duration = Duration::from_millis(20);
        let start = Instant::now();
        let mut moved = vec![false; self.counters.len()];
        loop {
            for (m, counter) in moved.iter_mut().zip(&self.counters) {
                *m = *m || matches!(counter.read_count(), Ok(v) if v > 0);
            }
            if moved.iter().all(|&m| m) || start.elapsed() >= PATIENCE {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut kept = moved.iter();
        let mut still = Vec::new();
        self.domains.retain(|d| {
            let keep = *kept.next().unwrap_or(&true);
            if !keep {
                Unreadable::note(&mut self.unreadable, &d.name, d.kind);
                still.push(Error::Missing {
                    path: d.path.clone(),
                    why: format!(
                        "{}: the event opens but its count stayed at 0 for {} ms: the energy \
                         register behind it reads 0, as under a hypervisor that shows the PMU \
                         without passing RAPL through",
                        d.name,
                        PATIENCE.as_millis()
                    ),
                    fix: "measure on bare metal, or accept estimates".into(),
                });
            }
            keep
        });
        let mut kept = moved.iter();
        self.counters.retain(|_| *kept.next().unwrap_or(&true));
        self.problems.extend(still);
    }
}

impl Source for PerfSource {
    found_getters!("perf");

    #[inline]
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        for ((counter, slot), domain) in self.counters.iter().zip(out.iter_mut()).zip(&self.domains)
        {
            *slot = counter.read_count().map_err(|source| Error::Io {
                path: domain.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}

/// Reads `events/<event>` with its `.scale` and `.unit`. Ok(None) when the PMU lacks the event,
/// which is how it says the CPU has no such domain.
fn read_event(events: &Path, event: &str, kind: DomainKind) -> Result<Option<EventSpec>> {
    let file = events.join(event);
    let text = match super::read_small(&file, 4096) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                path: file,
                source: e,
            })
        }
    };
    let config = parse_event_config(&text).ok_or_else(|| Error::Malformed {
        path: file.clone(),
        detail: format!("expected \"event=0x..\", found {:?}", text.trim()),
    })?;

    let scale_path = events.join(format!("{event}.scale"));
    let scale_text = super::read_small(&scale_path, 4096).map_err(|e| Error::Io {
        path: scale_path.clone(),
        source: e,
    })?;
    let scale = scale_text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| Error::Malformed {
            path: scale_path.clone(),
            detail: format!(
                "expected a positive number of joules per count, found {:?}",
                scale_text.trim()
            ),
        })?;

    // Older kernels may lack the .unit file; where it exists it must say joules, since the
    // scale is read as joules per count.
    let unit_path = events.join(format!("{event}.unit"));
    match super::read_small(&unit_path, 4096) {
        Ok(unit) if unit.trim() == "Joules" => {}
        Ok(unit) => {
            return Err(Error::Malformed {
                path: unit_path,
                detail: format!("expected \"Joules\", found {:?}", unit.trim()),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Io {
                path: unit_path,
                source: e,
            })
        }
    }
    Ok(Some(EventSpec {
        file,
        kind,
        config,
        scale,
    }))
}

/// The config of a sysfs event string such as "event=0x02". The power PMU's format puts the
/// event number in config bits 0-7, so the value is the config itself; any other term would
/// need the PMU's format files to place, so it is refused rather than guessed.
fn parse_event_config(text: &str) -> Option<u64> {
    let value = text.trim().strip_prefix("event=")?;
    let config = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => value.parse().ok()?,
    };
    (config <= 0xFF).then_some(config)
}

/// Whether 1/x is exact, so that dividing counts by units_per_joule equals multiplying by the
/// scale. The kernel scales every RAPL event to 2^-32 J, so this holds in practice.
fn is_power_of_two(x: f64) -> bool {
    const MANTISSA: u64 = (1 << 52) - 1;
    x.is_normal() && x > 0.0 && x.to_bits() & MANTISSA == 0
}

/// A kernel CPU list ("0,36", "0-3,8") in order. None if malformed or absurdly large.
fn parse_cpu_list(text: &str) -> Option<Vec<i32>> {
    const MAX_CPUS: usize = 1 << 16;
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<i32>().ok()?, hi.parse::<i32>().ok()?),
            None => {
                let cpu = part.parse::<i32>().ok()?;
                (cpu, cpu)
            }
        };
        if lo < 0 || hi < lo || cpus.len() + (hi - lo) as usize >= MAX_CPUS {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

/// CAP_PERFMON on an interpreter would let every script it runs watch the whole machine:
/// carbonfast does not advise it.
fn permission_fix() -> String {
    "system-wide RAPL perf events need kernel.perf_event_paranoid at 0 or below (or \
     CAP_PERFMON, which carbonfast does not advise giving to an interpreter): sudo sysctl \
     kernel.perf_event_paranoid=0, kept across reboots in /etc/sysctl.d/; or read the same \
     counters through powercap, which can be opened to one group (--source powercap)"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_commas_and_ranges_in_order() {
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0,36\n"), Some(vec![0, 36]));
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(
            parse_cpu_list("0-2,8,10-11"),
            Some(vec![0, 1, 2, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
    }

    #[test]
    fn malformed_cpu_lists_are_refused() {
        assert_eq!(parse_cpu_list("a"), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("0,,1"), None);
        assert_eq!(parse_cpu_list("-1"), None);
        assert_eq!(parse_cpu_list("0-2147483647"), None);
    }

    #[test]
    fn event_strings_give_the_config() {
        assert_eq!(parse_event_config("event=0x02\n"), Some(2));
        assert_eq!(parse_event_config("event=0x0d"), Some(0x0d));
        assert_eq!(parse_event_config("event=5"), Some(5));
        assert_eq!(parse_event_config("event=0x02,umask=0x1"), None);
        assert_eq!(parse_event_config("config=0x02"), None);
        assert_eq!(parse_event_config("event=0x100"), None);
        assert_eq!(parse_event_config("event="), None);
    }

    #[test]
    fn the_kernels_scale_is_an_exact_power_of_two() {
        let scale: f64 = "2.3283064365386962890625e-10".parse().unwrap();
        assert!(is_power_of_two(scale));
        assert_eq!(1.0 / scale, 4_294_967_296.0);
        assert!(!is_power_of_two(1e-6));
        assert!(!is_power_of_two(0.0));
    }

    /// Checks the attr layout and the read against the kernel with a software event (cpu-clock,
    /// every process on CPU 0), which any Linux has. Where the process may not open system-wide
    /// events, or a sandbox blocks the call, there is nothing to check; any other error (EINVAL,
    /// E2BIG: a bad attr) fails.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_syscall_opener_counts_a_software_event() {
        const PERF_TYPE_SOFTWARE: u32 = 1;
        const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
        let counter = match SyscallOpener.open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, 0) {
            Ok(c) => c,
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    || matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::ENODEV)) =>
            {
                eprintln!("perf_event_open not allowed here ({e}); skipped");
                return;
            }
            Err(e) => panic!("perf_event_open refused the attr: {e}"),
        };
        let a = counter.read_count().unwrap();
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let b = counter.read_count().unwrap();
        // cpu-clock counts nanoseconds on CPU 0 whether or not this thread runs there.
        assert!(b > a, "{a} then {b}");
    }

    #[test]
    fn permission_fix_names_sysctl_and_powercap_and_no_capability() {
        let fix = permission_fix();
        assert!(fix.contains("sudo sysctl kernel.perf_event_paranoid=0"));
        assert!(fix.contains("powercap"));
        assert!(!fix.contains("setcap"));
    }
}
