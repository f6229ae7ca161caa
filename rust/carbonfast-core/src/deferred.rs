//! Window edges that do not wait for slow sources.
//!
//! Some sources take milliseconds per read (NVML energy counters on some drivers: 3.4 ms on a
//! virtualised H100). An edge reads the fast sources at once and hands the slow ones to a
//! worker thread; the slow part of the snapshot is filled in when the worker is done and
//! waited for only when someone asks for the energy. The slow read happens within
//! microseconds of the edge, as a synchronous one would; only the caller no longer blocks.

use crate::meter::{Meter, Snapshot};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A slow read in flight. Errors are kept as their message: they are reported when the energy
/// is asked for, possibly more than once.
#[derive(Default)]
pub struct Pending {
    slot: Mutex<Option<std::result::Result<Snapshot, String>>>,
    done: Condvar,
}

impl Pending {
    fn wait(&self) -> std::result::Result<Snapshot, String> {
        let mut slot = lock(&self.slot);
        while slot.is_none() {
            slot = self.done.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
        slot.clone().expect("filled")
    }
}

/// A snapshot whose slow sources may still be being read.
pub struct EdgeSnapshot {
    fast: Snapshot,
    pending: Option<Arc<Pending>>,
    resolved: OnceLock<std::result::Result<Snapshot, String>>,
}

impl EdgeSnapshot {
    pub fn ready(snap: Snapshot) -> Self {
        EdgeSnapshot {
            fast: snap,
            pending: None,
            resolved: OnceLock::new(),
        }
    }

    /// When the edge was read (the fast sources' reading).
    pub fn t_ns(&self) -> u64 {
        self.fast.t_ns
    }

    /// The whole snapshot, waiting for the slow sources if they are still being read.
    pub fn resolve(&self, meter: &Meter) -> std::result::Result<&Snapshot, String> {
        let Some(pending) = &self.pending else {
            return Ok(&self.fast);
        };
        self.resolved
            .get_or_init(|| {
                let slow = pending.wait()?;
                let mut whole = self.fast.clone();
                meter.merge_slow(&mut whole, &slow);
                Ok(whole)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

struct Worker {
    tx: Sender<Arc<Pending>>,
    pid: u32,
    _thread: JoinHandle<()>,
}

/// Reads a meter's edges without waiting for its slow sources.
pub struct Deferred {
    meter: Arc<Meter>,
    worker: Mutex<Option<Worker>>,
}

impl Deferred {
    /// None when the meter has no slow source (edges are read whole, as usual).
    pub fn new(meter: Arc<Meter>) -> Option<Deferred> {
        meter.has_slow_sources().then(|| Deferred {
            meter,
            worker: Mutex::new(None),
        })
    }

    /// Reads the fast sources now and queues the slow ones.
    pub fn read(&self) -> crate::Result<EdgeSnapshot> {
        let mut fast = Snapshot::default();
        self.meter.read_speed_into(&mut fast, false)?;
        let pending = Arc::new(Pending::default());
        self.submit(pending.clone());
        Ok(EdgeSnapshot {
            fast,
            pending: Some(pending),
            resolved: OnceLock::new(),
        })
    }

    fn submit(&self, pending: Arc<Pending>) {
        let mut worker = lock(&self.worker);
        // A forked child has no worker thread: its parent's did not survive the fork.
        if worker.as_ref().is_none_or(|w| w.pid != std::process::id()) {
            *worker = Some(self.spawn());
        }
        if let Some(w) = worker.as_ref() {
            if let Err(failed) = w.tx.send(pending) {
                let p = failed.0;
                *lock(&p.slot) = Some(Err("the background reader stopped".into()));
                p.done.notify_all();
            }
        }
    }

    fn spawn(&self) -> Worker {
        let (tx, rx) = channel::<Arc<Pending>>();
        let meter = self.meter.clone();
        let thread = std::thread::Builder::new()
            .name("carbonfast-slow-reads".into())
            .spawn(move || {
                let mut snap = Snapshot::default();
                while let Ok(p) = rx.recv() {
                    let r = meter
                        .read_speed_into(&mut snap, true)
                        .map(|()| snap.clone())
                        .map_err(|e| e.to_string());
                    *lock(&p.slot) = Some(r);
                    p.done.notify_all();
                }
            })
            .expect("spawning the slow-source reader");
        Worker {
            tx,
            pid: std::process::id(),
            _thread: thread,
        }
    }
}
