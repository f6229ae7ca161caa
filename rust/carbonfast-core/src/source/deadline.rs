//! Reads that may block, done on a thread of their own and waited for with a deadline.
//!
//! A hwmon attribute is read through its driver, which may talk to the device over a slow bus
//! (I2C, ACPI, a GPU's management firmware); a hung driver or a device fallen off its bus can
//! keep such a read from ever returning, and a read blocked in the kernel cannot be cancelled.
//! So the read runs on a reader thread and the caller waits for it at most a deadline: past
//! it, the caller goes on with the source's domains failed, and while the reader is still
//! stuck every later read fails at once rather than queueing behind it. When the stuck read
//! returns, the reader serves again.

use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a caller waits for one read: far above a healthy one (an ACPI power meter, the
/// slowest seen, takes about 100 ms), and well within the seconds in which `carbonfast run`
/// must hand back its command's exit code.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

type ReadFn = dyn Fn(&mut [u64], &mut Vec<(usize, Error)>) -> Result<()> + Send + Sync;

/// One read handed to the reader, and its answer.
#[derive(Default)]
struct Slot {
    /// Requests made, and answered: the reader is busy while they differ.
    asked: u64,
    answered: u64,
    values: Vec<u64>,
    failed: Vec<(usize, Error)>,
    result: Option<Result<()>>,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

struct Reader {
    shared: Arc<Shared>,
    pid: u32,
}

/// Reads through `read` on a thread of its own, each read waited for at most READ_DEADLINE.
pub(crate) struct DeadlineReader {
    read: Arc<ReadFn>,
    n: usize,
    what: String,
    /// Respawned in a child after fork, where the thread did not survive.
    reader: Mutex<Option<Reader>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DeadlineReader {
    /// `read` fills `n` values and lists the ones it could not read; `what` names the source
    /// in errors.
    pub(crate) fn new(
        n: usize,
        what: &str,
        read: impl Fn(&mut [u64], &mut Vec<(usize, Error)>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        DeadlineReader {
            read: Arc::new(read),
            n,
            what: what.to_string(),
            reader: Mutex::new(None),
        }
    }

    /// Reads into `out`, handing each value that could not be read to `failed`, within
    /// `deadline`; Err where the reader did not answer in time (or is still stuck on an
    /// earlier read).
    pub(crate) fn read(
        &self,
        out: &mut [u64],
        failed: &mut dyn FnMut(usize, Error),
        deadline: Duration,
    ) -> Result<()> {
        let shared = self.shared()?;
        let mut slot = lock(&shared.slot);
        if slot.asked != slot.answered {
            return Err(self.hung(deadline));
        }
        slot.asked += 1;
        let asked = slot.asked;
        shared.changed.notify_all();
        let (mut slot, _) = shared
            .changed
            .wait_timeout_while(slot, deadline, |s| s.answered != asked)
            .unwrap_or_else(|p| p.into_inner());
        if slot.answered != asked {
            return Err(self.hung(deadline));
        }
        out.copy_from_slice(&slot.values[..out.len()]);
        for (i, e) in slot.failed.drain(..) {
            failed(i, e);
        }
        slot.result.take().unwrap_or(Ok(()))
    }

    fn hung(&self, deadline: Duration) -> Error {
        Error::Io {
            path: self.what.clone().into(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "a read did not answer within {:.3} s (a hung driver or device)",
                    deadline.as_secs_f64()
                ),
            ),
        }
    }

    fn shared(&self) -> Result<Arc<Shared>> {
        let mut reader = lock(&self.reader);
        let pid = std::process::id();
        if let Some(r) = reader.as_ref().filter(|r| r.pid == pid) {
            return Ok(r.shared.clone());
        }
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                values: vec![0; self.n],
                ..Slot::default()
            }),
            changed: Condvar::new(),
        });
        let (theirs, read) = (shared.clone(), self.read.clone());
        crate::threads::spawn_quiet("carbonfast-blocking-reads", move || serve(&theirs, &*read))
            .map_err(|source| Error::Io {
                path: self.what.clone().into(),
                source,
            })?;
        *reader = Some(Reader {
            shared: shared.clone(),
            pid,
        });
        Ok(shared)
    }
}

impl Drop for DeadlineReader {
    fn drop(&mut self) {
        // Wakes the reader so that it sees it is the last owner and ends.
        if let Some(r) = lock(&self.reader).take() {
            r.shared.changed.notify_all();
        }
    }
}

/// The reader thread: answers each request until its caller is gone.
fn serve(shared: &Arc<Shared>, read: &ReadFn) {
    let mut values = Vec::new();
    let mut failed = Vec::new();
    loop {
        {
            let mut slot = lock(&shared.slot);
            while slot.asked == slot.answered {
                if Arc::strong_count(shared) == 1 {
                    return;
                }
                slot = shared
                    .changed
                    .wait_timeout(slot, Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            values.resize(slot.values.len(), 0);
        }
        failed.clear();
        let result = read(&mut values, &mut failed);
        let mut slot = lock(&shared.slot);
        slot.values.copy_from_slice(&values);
        slot.failed = std::mem::take(&mut failed);
        slot.result = Some(result);
        slot.answered = slot.asked;
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    #[test]
    fn a_read_that_hangs_fails_at_the_deadline_then_at_once_and_recovers() {
        let stuck = Arc::new(AtomicBool::new(false));
        let gate = Arc::new((Mutex::new(()), Condvar::new()));
        let (s, g) = (stuck.clone(), gate.clone());
        let reader = DeadlineReader::new(2, "fake", move |out, failed| {
            while s.load(Ordering::SeqCst) {
                let guard = lock(&g.0);
                let _unused = g.1.wait_timeout(guard, Duration::from_millis(5));
            }
            out.copy_from_slice(&[7, 9]);
            failed.push((
                1,
                Error::Malformed {
                    path: "b".into(),
                    detail: "x".into(),
                },
            ));
            Ok(())
        });
        let mut out = [0; 2];
        let mut bad = Vec::new();
        reader
            .read(&mut out, &mut |i, _| bad.push(i), READ_DEADLINE)
            .unwrap();
        assert_eq!((out, bad.as_slice()), ([7, 9], &[1][..]));
        stuck.store(true, Ordering::SeqCst);
        let t = Instant::now();
        let deadline = Duration::from_millis(100);
        let err = reader.read(&mut out, &mut |_, _| {}, deadline).unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(t.elapsed() >= deadline && t.elapsed() < Duration::from_secs(1));
        // Still stuck: the next read does not wait at all.
        let t = Instant::now();
        assert!(reader.read(&mut out, &mut |_, _| {}, deadline).is_err());
        assert!(t.elapsed() < deadline);
        stuck.store(false, Ordering::SeqCst);
        gate.1.notify_all();
        let t = Instant::now();
        while reader.read(&mut out, &mut |_, _| {}, deadline).is_err() {
            assert!(t.elapsed() < Duration::from_secs(5), "the reader never recovered");
        }
        assert_eq!(out, [7, 9]);
    }
}
