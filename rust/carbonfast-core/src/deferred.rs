//! Window edges that do not wait for slow sources, and the poller that timestamps slow
//! counters' refreshes.
//!
//! Some sources take milliseconds per read (NVML energy counters: 3.3 ms on a virtualised H100)
//! and refresh slowly (every ~100 ms there). A window's edge reads the fast sources at once and
//! never waits for a slow one:
//!
//! - where a slow source's counters refresh in steps of a known period, a background poller
//!   reads it while windows are open (and a while after), locked to the refresh phase: it sleeps
//!   until just before the next refresh is due and then reads until it sees it. Every refresh
//!   is logged with the reads around it, and an edge takes its value from that log: the value a
//!   read at the edge's own instant would have returned. An edge then costs no slow read at all;
//! - otherwise, or where the poller had paused (no window for a while), the edge hands a read to
//!   the same thread, done within microseconds of the edge, and wakes the poller.
//!
//! Either way the slow part of an edge is filled in when someone asks for the energy.
//!
//! A meter that samples a trace keeps the poller reading all the time (`poll_always`): the
//! trace is interpolated between the refreshes it timestamps, and a slow counter read only at
//! the sampler's pace (once a refresh period) would place them no better than to a period.

use crate::clock::monotonic_ns;
use crate::meter::{Meter, Snapshot, Window, READ_DEADLINE_NS};
use crate::refresh::StepLog;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the poller keeps reading after the last edge or request: back-to-back windows
/// then find every refresh before them already logged.
const MIN_LINGER_NS: u64 = 500_000_000;

/// A slow read in flight. Errors are kept as their message: they are reported when the energy
/// is asked for, possibly more than once.
#[derive(Default)]
pub struct Pending {
    slot: Mutex<Option<std::result::Result<Snapshot, String>>>,
    done: Condvar,
}

impl Pending {
    /// The read's result, waiting at most READ_DEADLINE_NS (and the time the reader may take
    /// to get to it): a device that stopped answering must not hold the window's edge.
    fn wait(&self) -> std::result::Result<Snapshot, String> {
        let limit = Duration::from_nanos(READ_DEADLINE_NS + 500_000_000);
        let (slot, _) = self
            .done
            .wait_timeout_while(lock(&self.slot), limit, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        slot.clone().unwrap_or_else(|| {
            Err(format!(
                "a read did not answer within {} s (a hung driver or device)",
                READ_DEADLINE_NS / 1_000_000_000
            ))
        })
    }

    fn try_get(&self) -> Option<std::result::Result<Snapshot, String>> {
        lock(&self.slot).clone()
    }

    fn fill(&self, r: std::result::Result<Snapshot, String>) {
        *lock(&self.slot) = Some(r);
        self.done.notify_all();
    }
}

/// Where an edge's slow sources come from.
enum Slow {
    /// The meter has none.
    None,
    /// A read queued on the background thread.
    Read(Arc<Pending>),
    /// The refresh logs, at the edge's own instant; with each slow domain's log mark then.
    Log(Arc<Shared>, Vec<(u64, u64)>),
    /// A slow source is hung: nothing to wait for (its failure is counted in `fast`).
    Failed,
}

/// A snapshot whose slow sources may still be being read.
pub struct EdgeSnapshot {
    fast: Snapshot,
    slow: Slow,
    resolved: OnceLock<std::result::Result<Snapshot, String>>,
}

impl EdgeSnapshot {
    pub fn ready(snap: Snapshot) -> Self {
        EdgeSnapshot {
            fast: snap,
            slow: Slow::None,
            resolved: OnceLock::new(),
        }
    }

    /// When the edge was read (the fast sources' reading).
    pub fn t_ns(&self) -> u64 {
        self.fast.t_ns
    }

    /// The whole snapshot if it is known without waiting: no slow source, or resolved before.
    pub fn known(&self) -> Option<&Snapshot> {
        match &self.slow {
            Slow::None => Some(&self.fast),
            _ => self.resolved.get().and_then(|r| r.as_ref().ok()),
        }
    }

    /// The whole snapshot, waiting for the slow sources if they are still being read. A slow
    /// source that could not be read in time is noted as failed (its domains are unknown over
    /// the windows around this edge); the others are kept.
    pub fn resolve(&self, meter: &Meter) -> std::result::Result<&Snapshot, String> {
        self.resolved
            .get_or_init(|| {
                let slow = match &self.slow {
                    Slow::None => return Ok(self.fast.clone()),
                    Slow::Read(pending) => match pending.try_get() {
                        Some(r) => r,
                        // A slow source already known to hang: its read is not waited for.
                        None if (0..meter.sources().len())
                            .any(|s| meter.sources()[s].slow() && meter.overdue(s)) =>
                        {
                            Err(format!(
                                "a read did not answer within {} s (a hung driver or device)",
                                READ_DEADLINE_NS / 1_000_000_000
                            ))
                        }
                        None => pending.wait(),
                    },
                    Slow::Log(shared, marks) => shared.snapshot_at(self.fast.t_ns, marks),
                    Slow::Failed => return Ok(self.fast.clone()),
                };
                let mut whole = self.fast.clone();
                match slow {
                    Ok(slow) => meter.merge_slow(&mut whole, &slow),
                    Err(why) => {
                        for s in (0..meter.sources().len()).filter(|&s| meter.sources()[s].slow()) {
                            meter.note_failed(s, &format!("{}: {why}", meter.sources()[s].name()));
                        }
                        let mut now = Vec::new();
                        meter.failures_now(&mut now);
                        let mut failed = whole.clone();
                        failed.failures = now;
                        meter.merge_slow(&mut whole, &failed);
                    }
                }
                Ok(whole)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

enum Msg {
    Read(Arc<Pending>),
    /// The poller has work again: an edge or a resolve after a quiet spell.
    Wake,
}

struct Worker {
    tx: Sender<Msg>,
    pid: u32,
    _thread: JoinHandle<()>,
}

/// What the poller thread and its callers share.
#[derive(Default)]
struct Signals {
    /// The poller reads until this instant (CLOCK_MONOTONIC ns).
    active_until: AtomicU64,
    /// The poller reads whether or not windows are open (a meter that samples a trace).
    always: AtomicBool,
    /// Bumped after each background read, for those waiting on the logs.
    progress: Mutex<u64>,
    progressed: Condvar,
    /// Fork safety: the thread parks, holding no lock, while `pause` is set.
    control: Mutex<Control>,
    parked_changed: Condvar,
}

#[derive(Default)]
struct Control {
    pause: bool,
    parked: bool,
}

struct Shared {
    meter: Arc<Meter>,
    /// Sources the poller reads: slow or slowly refreshing, with every counter logged.
    polled: Vec<usize>,
    /// Whether every slow source is polled, so that edges take slow values from the logs.
    edges_from_logs: bool,
    linger_ns: u64,
    signals: Arc<Signals>,
    worker: Mutex<Option<Worker>>,
}

/// Reads a meter's edges without waiting for its slow sources.
pub struct Deferred {
    shared: Arc<Shared>,
}

impl Deferred {
    /// None when the meter has no slow or slowly refreshing source (edges are read whole, as
    /// usual).
    pub fn new(meter: Arc<Meter>) -> Option<Deferred> {
        let n = meter.sources().len();
        let polled: Vec<usize> = (0..n).filter(|&s| meter.polled(s)).collect();
        if !meter.has_slow_sources() && polled.is_empty() {
            return None;
        }
        let edges_from_logs = (0..n)
            .filter(|&s| meter.sources()[s].slow())
            .all(|s| polled.contains(&s));
        let longest = polled
            .iter()
            .filter_map(|&s| longest_period(&meter, s))
            .max()
            .unwrap_or(0);
        Some(Deferred {
            shared: Arc::new(Shared {
                meter,
                polled,
                edges_from_logs,
                linger_ns: MIN_LINGER_NS.max(5 * longest),
                signals: Arc::default(),
                worker: Mutex::new(None),
            }),
        })
    }

    /// Reads the fast sources now; the slow ones come from the refresh logs or a queued read.
    pub fn read(&self) -> crate::Result<EdgeSnapshot> {
        let sh = &self.shared;
        // Before the fast read, so that the edge's failure counts hold this edge's notice.
        let hung = sh.meter.has_slow_sources() && sh.slow_hung();
        let mut fast = Snapshot::default();
        sh.meter.read_speed_into(&mut fast, false)?;
        // Before keep_polling wakes it: was the poller reading up to this edge? If it was not,
        // the log knows only the value before its pause, and a refresh just after the edge
        // could not be told from one just before: the edge is read instead.
        let polled_lately = sh.polled_lately(fast.t_ns);
        sh.keep_polling(fast.t_ns);
        let slow = if !sh.meter.has_slow_sources() {
            Slow::None
        } else if hung {
            Slow::Failed
        } else if sh.edges_from_logs && polled_lately {
            Slow::Log(sh.clone(), sh.marks())
        } else {
            let pending = Arc::new(Pending::default());
            sh.send(Msg::Read(pending.clone()));
            Slow::Read(pending)
        };
        Ok(EdgeSnapshot {
            fast,
            slow,
            resolved: OnceLock::new(),
        })
    }

    /// `Meter::refine`, waiting for the counters' next refresh as `wait_for_refresh` does.
    pub fn refine(&self, w: &mut Window) {
        self.shared
            .meter
            .refine(w, &|s, t| self.wait_for_refresh(s, t));
    }

    /// `Meter::logged_energy`, waiting as `refine` does.
    pub fn logged_energy(&self, t1_ns: u64, t2_ns: u64) -> Option<f64> {
        self.shared
            .meter
            .logged_energy(t1_ns, t2_ns, &|s, t| self.wait_for_refresh(s, t))
    }

    /// Waits until source `s` has shown a refresh after `t_ns`: on the poller for a polled
    /// source, by reading it on this thread otherwise.
    fn wait_for_refresh(&self, s: usize, t_ns: u64) -> bool {
        let sh = &self.shared;
        if sh.polled.contains(&s) {
            sh.wait_for(s, t_ns)
        } else {
            sh.meter.poll_until_step(s, t_ns, &mut Snapshot::default())
        }
    }

    /// Keeps the poller reading for a while (a benchmark about to watch refreshes).
    pub fn keep_polling(&self) {
        self.shared.keep_polling(monotonic_ns());
    }

    /// Keeps the poller reading for as long as the meter lives, windows open or not: a
    /// sampled trace is interpolated between the refreshes it timestamps. A counter that has
    /// shown no refresh for two periods is then read a few times a period, not back to back.
    pub fn poll_always(&self) {
        let sh = &self.shared;
        if sh.polled.is_empty() {
            return;
        }
        sh.signals.always.store(true, Ordering::SeqCst);
        sh.send(Msg::Wake);
    }

    /// Parks the background thread where it is safe to fork: not inside a read, holding no
    /// lock (a lock held by a thread at fork stays held forever in the child).
    pub fn pause_for_fork(&self) {
        let sh = &self.shared;
        lock(&sh.signals.control).pause = true;
        let running = lock(&sh.worker)
            .as_ref()
            .is_some_and(|w| w.pid == std::process::id());
        if !running {
            return;
        }
        sh.send(Msg::Wake);
        let c = lock(&sh.signals.control);
        let _unused = sh
            .signals
            .parked_changed
            .wait_timeout_while(c, Duration::from_millis(500), |c| !c.parked)
            .unwrap_or_else(|p| p.into_inner());
    }

    pub fn resume_after_fork(&self) {
        lock(&self.shared.signals.control).pause = false;
        self.shared.signals.parked_changed.notify_all();
    }

    /// In a child after fork: the poller thread did not survive it, and the parent's deadline
    /// would keep the child from starting its own.
    pub fn restart_after_fork(&self) {
        let signals = &self.shared.signals;
        *lock(&signals.control) = Control::default();
        signals.active_until.store(0, Ordering::SeqCst);
        *lock(&self.shared.worker) = None;
        if signals.always.load(Ordering::SeqCst) {
            self.shared.send(Msg::Wake);
        }
    }
}

/// The longest refresh period among source `s`'s counters, at its upper bound.
fn longest_period(meter: &Meter, s: usize) -> Option<u64> {
    (0..meter.sources()[s].domains().len())
        .filter_map(|i| meter.step_period(s, i))
        .map(|p| p.max_ns)
        .max()
}

impl Shared {
    /// Keeps the poller reading until a linger after `now`, waking it if it was idle.
    fn keep_polling(&self, now: u64) {
        if self.polled.is_empty() {
            return;
        }
        let prev = self
            .signals
            .active_until
            .fetch_max(now + self.linger_ns, Ordering::SeqCst);
        if prev <= now {
            self.send(Msg::Wake);
        }
    }

    fn send(&self, msg: Msg) {
        let mut worker = lock(&self.worker);
        // A forked child has no worker thread: its parent's did not survive the fork.
        if worker.as_ref().is_none_or(|w| w.pid != std::process::id()) {
            *worker = Some(self.spawn());
        }
        if let Some(w) = worker.as_ref() {
            if let Err(failed) = w.tx.send(msg) {
                if let Msg::Read(p) = failed.0 {
                    p.fill(Err("the background reader stopped".into()));
                }
            }
        }
    }

    fn spawn(&self) -> Worker {
        let (tx, rx) = channel::<Msg>();
        // The thread holds what it needs, not the Shared that owns its channel: dropping the
        // Deferred closes the channel and the thread ends.
        let poller = Poller {
            meter: self.meter.clone(),
            polled: self.polled.clone(),
            signals: self.signals.clone(),
        };
        let thread = crate::threads::spawn_quiet("carbonfast-slow-reads", move || poller.run(&rx))
            .expect("spawning the slow-source reader");
        Worker {
            tx,
            pid: std::process::id(),
            _thread: thread,
        }
    }

    /// Whether a slow source has a read in flight past its deadline: an edge then does not
    /// wait for it (each such edge counts as a failed read of it).
    fn slow_hung(&self) -> bool {
        let m = &self.meter;
        let mut hung = false;
        for s in (0..m.sources().len()).filter(|&s| m.sources()[s].slow()) {
            if m.overdue(s) {
                m.note_failed(
                    s,
                    &format!(
                        "{}: a read did not answer within {} s (a hung driver or device)",
                        m.sources()[s].name(),
                        READ_DEADLINE_NS / 1_000_000_000
                    ),
                );
                hung = true;
            }
        }
        hung
    }

    /// Whether every slow source was read within one of its refresh periods before `t_ns`.
    fn polled_lately(&self, t_ns: u64) -> bool {
        let m = &self.meter;
        self.polled
            .iter()
            .filter(|&&s| m.sources()[s].slow())
            .all(|&s| t_ns.saturating_sub(m.last_read_ns(s)) <= longest_period(m, s).unwrap_or(0))
    }

    /// Each slow domain's log mark (see `StepLog::mark`), in domain order.
    fn marks(&self) -> Vec<(u64, u64)> {
        let m = &self.meter;
        (0..m.domains().len())
            .map(|d| {
                let (s, i) = m.locate(d);
                let slow = m.sources()[s].slow();
                slow.then(|| m.with_log(s, i, StepLog::mark))
                    .flatten()
                    .unwrap_or((0, 0))
            })
            .collect()
    }

    /// The slow sources' values at `t_ns`, from their refresh logs, once the poller has seen
    /// the refresh after `t_ns` (which, with the period, places the one before it).
    fn snapshot_at(
        &self,
        t_ns: u64,
        marks: &[(u64, u64)],
    ) -> std::result::Result<Snapshot, String> {
        let m = &self.meter;
        let mut snap = Snapshot {
            t_ns,
            totals: vec![0; m.domains().len()],
            ..Snapshot::default()
        };
        for &s in &self.polled {
            if !m.sources()[s].slow() {
                continue;
            }
            if !self.wait_for(s, t_ns) && m.last_read_ns(s) <= t_ns {
                return Err(
                    "no reading came after the window's edge (the device stopped \
                            answering)"
                        .to_string(),
                );
            }
            for i in 0..m.sources()[s].domains().len() {
                let d = m.index(s, i);
                let v = m.with_log(s, i, |log| log.value_at(t_ns, marks[d]));
                snap.totals[d] = v.unwrap_or(0);
            }
        }
        Ok(snap)
    }

    /// Waits until the poller has seen a refresh of source `s` after `t_ns`.
    fn wait_for(&self, s: usize, t_ns: u64) -> bool {
        self.wait_until(s, |m, s| {
            (0..m.sources()[s].domains().len())
                .all(|i| m.with_log(s, i, |l| l.has_step_after(t_ns)) != Some(false))
        })
    }

    /// Waits, keeping the poller busy, until `done` holds for source `s`, or three of its
    /// refresh periods (and a little) have passed.
    fn wait_until(&self, s: usize, done: impl Fn(&Meter, usize) -> bool) -> bool {
        let m = &self.meter;
        let limit = Duration::from_nanos(3 * longest_period(m, s).unwrap_or(0) + 50_000_000);
        let start = std::time::Instant::now();
        loop {
            self.keep_polling(monotonic_ns());
            let progress = lock(&self.signals.progress);
            if done(m, s) {
                return true;
            }
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            let _unused = self
                .signals
                .progressed
                .wait_timeout(progress, left.min(Duration::from_millis(20)))
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The background thread: queued edge reads, and the polling of slow counters.
struct Poller {
    meter: Arc<Meter>,
    polled: Vec<usize>,
    signals: Arc<Signals>,
}

impl Poller {
    fn run(&self, rx: &Receiver<Msg>) {
        let mut scratch = Snapshot::default();
        loop {
            self.park_while_paused();
            let now = monotonic_ns();
            let asked = now < self.signals.active_until.load(Ordering::SeqCst);
            let active = asked || self.signals.always.load(Ordering::SeqCst);
            let due = self.polled.iter().map(|&s| self.due(s, !asked, now)).min();
            let msg = match due.filter(|_| active) {
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
                Some(t) => match rx.recv_timeout(Duration::from_nanos(t.saturating_sub(now))) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            match msg {
                Some(Msg::Read(p)) => {
                    let r = self
                        .meter
                        .read_speed_into(&mut scratch, true)
                        .map(|()| scratch.clone())
                        .map_err(|e| e.to_string());
                    p.fill(r);
                }
                Some(Msg::Wake) => continue,
                None => {
                    let now = monotonic_ns();
                    let asked = now < self.signals.active_until.load(Ordering::SeqCst);
                    for &s in &self.polled {
                        if self.due(s, !asked, now) <= now
                            && self.meter.read_source_into(s, &mut scratch).is_err()
                        {
                            // A device that stopped answering: do not spin on it.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            }
            let mut progress = lock(&self.signals.progress);
            *progress += 1;
            self.signals.progressed.notify_all();
        }
    }

    fn park_while_paused(&self) {
        let mut c = lock(&self.signals.control);
        while c.pause {
            c.parked = true;
            self.signals.parked_changed.notify_all();
            c = self
                .signals
                .parked_changed
                .wait(c)
                .unwrap_or_else(|p| p.into_inner());
        }
        c.parked = false;
    }

    /// When source `s` should next be read: just before its next refresh is due (by the last
    /// one seen precisely, a period, less the jitter and one read's time), or now when no
    /// refresh has been seen precisely yet, or the one due has not come. With `backoff` (the
    /// poller reads only for a trace, no window asked), a counter that has shown no refresh
    /// for two periods (a stalled device) is read every quarter period, not back to back.
    fn due(&self, s: usize, backoff: bool, now: u64) -> u64 {
        let m = &self.meter;
        let cost = m.read_cost_ns(s);
        let last_read = m.last_read_ns(s);
        (0..m.sources()[s].domains().len())
            .filter_map(|i| {
                m.with_log(s, i, |log| {
                    let p = log.period();
                    let due = match log.last() {
                        Some(l) if l.hi_ns - l.lo_ns <= p.nominal_ns / 4 => {
                            let early = p.nominal_ns * 6 / 100 + cost;
                            (l.mid_ns() + p.nominal_ns).saturating_sub(early)
                        }
                        _ => 0,
                    };
                    let stalled = log
                        .last()
                        .is_some_and(|l| l.hi_ns.saturating_add(2 * p.max_ns) < now);
                    if backoff && stalled {
                        due.max(last_read + p.nominal_ns / 4)
                    } else {
                        due
                    }
                })
            })
            .min()
            .unwrap_or(0)
    }
}
