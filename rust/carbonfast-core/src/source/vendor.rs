//! What a vendor library (NVML's libnvidia-ml, AMD SMI's libamd_smi) may not do to carbonfast.
//!
//! These libraries are closed or large, talk to a kernel driver, and fail in ways no API
//! documents: a GPU fallen off the bus (NVIDIA Xid 79) leaves `nvmlInit_v2` waiting forever, a
//! driver in a bad state reports absurd counts, names come back without their terminating NUL.
//! So every call that carbonfast makes outside the hot path goes through here:
//! - discovery (load, init, enumeration) runs on a thread of its own and is waited for at most
//!   [`discovery_timeout`]; a library that does not answer by then is left behind and named
//!   as a problem, its GPUs unmeasured, and everything else goes on;
//! - shutting a library down is waited for at most [`SHUTDOWN_TIMEOUT`];
//! - every count a library reports is bounded by [`MAX_DEVICES`] before it sizes an
//!   allocation or a loop, and an implausible one is noted;
//! - every string it returns is read within its buffer and rid of control characters.
//!
//! A crash inside the library (a segfault) cannot be contained in-process: `carbonfast run`
//! keeps the measured command's exit code by measuring from another process.

use crate::error::Error;
use crate::threads::spawn_quiet;
use libloading::Library;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The most devices (sockets, processors, GPUs) carbonfast takes from one library's count.
///
/// The largest nodes today hold 16 GPUs (DGX-2, HGX boards with 16), and an MI300X node split
/// into compute partitions (CPX) shows 8 x 8 = 64; 256 leaves room for what comes next while
/// keeping what a garbage count can cost small: 2 KiB of handles and 256 calls, where NVML
/// reporting 2^30 devices would otherwise ask for 8 GiB of handles or a billion calls.
pub const MAX_DEVICES: u32 = 256;

/// How long discovery waits for a library to load, start and list its GPUs, unless
/// CARBONFAST_VENDOR_TIMEOUT_S says otherwise. A healthy NVML or AMD SMI starts in well under
/// a second, plus the quarter second that discovery watches the energy counters; a driver
/// initialising many GPUs cold (persistence mode off) can take a few seconds.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variable that overrides [`DISCOVERY_TIMEOUT`]: seconds, a positive number.
pub const TIMEOUT_ENV: &str = "CARBONFAST_VENDOR_TIMEOUT_S";

/// How long dropping a source waits for the library's shutdown (see [`shut_down`]).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The discovery deadline: CARBONFAST_VENDOR_TIMEOUT_S where it is a positive number of
/// seconds, else [`DISCOVERY_TIMEOUT`]. The one place the variable is read.
pub fn discovery_timeout() -> Duration {
    parse_timeout(std::env::var(TIMEOUT_ENV).ok().as_deref())
}

fn parse_timeout(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DISCOVERY_TIMEOUT)
}

/// A duration as the problems word it: "5 s", "0.5 s".
pub fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Runs `f` on a thread named `name` and waits for it at most `deadline`: its result, or None
/// if it did not finish in time. The thread is then left behind, since a thread stuck in a
/// library cannot be cancelled; whatever it returns later is dropped there. If no thread can
/// be started, `f` runs here, without a deadline. A panic in `f` is resumed here.
pub fn within<T, F>(name: &str, deadline: Duration, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    // Shared, so that the caller can still run `f` if the thread cannot be started.
    let job = Arc::new(Mutex::new(Some(f)));
    let spawned = spawn_quiet(name, {
        let job = job.clone();
        move || {
            let f = job.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(f) = f {
                // The receiver is gone if the caller stopped waiting: nothing to do then.
                let _ = tx.send(f());
            }
        }
    });
    let Ok(handle) = spawned else {
        let f = job.lock().unwrap_or_else(|p| p.into_inner()).take();
        return f.map(|f| f());
    };
    match rx.recv_timeout(deadline) {
        Ok(v) => Some(v),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => None,
        },
    }
}

/// Shuts a library down on a thread of its own and waits for that at most
/// [`SHUTDOWN_TIMEOUT`]. `owned` (the loaded library) moves into the thread and is dropped
/// there after `shutdown`, so the library stays mapped for as long as a thread may run in it.
///
/// Why wait at all, rather than skip the shutdown: NVML counts its inits, and a process that
/// makes and drops meters (a notebook, a test suite) would leak one per source; AMD SMI keeps
/// threads and device files open until shut down. Why not wait longer: a shutdown stuck on a
/// lost GPU would otherwise keep a meter's drop, or the interpreter's exit, from finishing.
/// A shutdown left running is abandoned when the process exits.
pub fn shut_down<A: Send + 'static>(name: &str, owned: A, shutdown: fn(&A)) {
    within(name, SHUTDOWN_TIMEOUT, move || {
        shutdown(&owned);
        drop(owned);
    });
}

/// Bounds a count that `library`'s `call` reported: the count itself where plausible, else
/// [`MAX_DEVICES`], with the implausible count noted as a problem on `path`.
pub fn bounded_count(
    count: u32,
    library: &str,
    call: &str,
    path: &Path,
    problems: &mut Vec<Error>,
) -> u32 {
    if count <= MAX_DEVICES {
        return count;
    }
    problems.push(Error::Malformed {
        path: path.to_path_buf(),
        detail: format!(
            "{library}'s {call} reported {count} devices, more than any machine holds: the \
             library or its driver is misbehaving; at most {MAX_DEVICES} are tried"
        ),
    });
    MAX_DEVICES
}

/// Text that a library wrote into a buffer: up to the first NUL, or the whole buffer if it
/// wrote none (never past it); invalid UTF-8 and control characters (escapes that would act
/// on a terminal, bidirectional overrides) replaced by U+FFFD; surrounding blanks trimmed.
pub fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim()
        .chars()
        .map(|c| if unsafe_char(c) { '\u{FFFD}' } else { c })
        .collect()
}

fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Opens a vendor library, running its initialisers (which have no preconditions of ours).
pub(crate) fn open_library(path: &Path) -> std::result::Result<Library, String> {
    // SAFETY: loading a library runs its initialisers; they need nothing from carbonfast.
    unsafe { Library::new(path) }.map_err(|e| e.to_string())
}

/// The entry point `name` of `lib`; an error naming it where the library lacks it.
///
/// # Safety
/// `T` must be the function pointer type that the library's public header gives `name`, and
/// the pointer must not outlive `lib`.
pub(crate) unsafe fn required<T: Copy>(
    lib: &Library,
    name: &str,
) -> std::result::Result<T, String> {
    // SAFETY: as the caller promises.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{name}: {e}"))
}

/// The entry point `name` of `lib`, where this release of the library has it.
///
/// # Safety
/// As [`required`].
pub(crate) unsafe fn optional<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    // SAFETY: as the caller promises.
    unsafe { lib.get::<T>(name.as_bytes()) }.ok().map(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_timeout_is_a_positive_number_of_seconds_or_the_default() {
        assert_eq!(parse_timeout(None), DISCOVERY_TIMEOUT);
        assert_eq!(parse_timeout(Some("0.25")), Duration::from_millis(250));
        assert_eq!(parse_timeout(Some(" 30 ")), Duration::from_secs(30));
        for bad in ["", "0", "-1", "nan", "inf", "5s", "1e300"] {
            assert_eq!(parse_timeout(Some(bad)), DISCOVERY_TIMEOUT, "{bad}");
        }
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
    }

    #[test]
    fn a_call_that_does_not_finish_is_left_behind_at_the_deadline() {
        let t = Instant::now();
        let r = within("t", Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(3600));
        });
        assert!(r.is_none());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(within("t", Duration::from_secs(10), || 7), Some(7));
    }

    #[test]
    #[should_panic(expected = "ours")]
    fn a_panic_inside_is_resumed_outside() {
        within("t", Duration::from_secs(10), || panic!("ours"));
    }

    #[test]
    fn counts_past_the_maximum_are_bounded_and_noted() {
        let mut problems = Vec::new();
        let p = Path::new("/lib");
        assert_eq!(bounded_count(8, "NVML", "f", p, &mut problems), 8);
        assert!(problems.is_empty());
        assert_eq!(
            bounded_count(1 << 30, "NVML", "f", p, &mut problems),
            MAX_DEVICES
        );
        assert!(matches!(&problems[..], [Error::Malformed { detail, .. }]
            if detail.contains("NVML's f reported 1073741824 devices")));
    }

    #[test]
    fn text_stops_at_the_buffer_and_replaces_control_characters() {
        assert_eq!(text(b"H100\0garbage"), "H100");
        assert_eq!(text(b"  H100 \n"), "H100");
        assert_eq!(text(b"ABCD"), "ABCD");
        assert_eq!(text(b"\x1b[31mred\x07"), "\u{FFFD}[31mred\u{FFFD}");
        assert_eq!(text("a\u{202E}b\u{85}c".as_bytes()), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(text(b"\xffok"), "\u{FFFD}ok");
    }
}
