//! The meter's heartbeat: one background thread that reads every source
//!
//! - at a fixed rate when sampling (`sample_hz`), storing each sample in a bounded ring buffer
//!   for power traces; sleeps run to absolute deadlines (a futex wait with an absolute
//!   CLOCK_MONOTONIC timeout), so the rate does not drift, and deadlines that passed while a
//!   read ran late are counted, not caught up in a burst;
//! - otherwise, while any window is open, slowly enough to cost nothing and fast enough that no
//!   counter wraps twice between two reads (a 32-bit MSR counter wraps within minutes at high
//!   power), so that windows of hours stay exact.
//!
//! A counter that refreshes in steps (an H100's every 100 ms, RAPL about every millisecond) is
//! not traced as read: a sample between two refreshes would show 0 W and the one after them a
//! whole refresh's energy at once. Its samples are re-expressed, as window edges are, as the
//! energy interpolated between the timestamped refreshes around them (see [`crate::refresh`]),
//! once the refresh after them has been seen; until then they are unknown (NaN), never 0.
//!
//! A stop or pause wakes the sleep at once: dropping a meter sampling at 1 Hz does not wait for
//! its next deadline. The thread never touches Python, and once started it allocates nothing
//! per sample.

use crate::clock::monotonic_ns;
use crate::meter::{Meter, Snapshot};
use crate::refresh::{self, Period, Step, StepLog};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Power no domain is expected to exceed, for the wrap guard: generous on purpose (the largest
/// server sockets draw about 500 W), since reading more often than needed costs little.
pub const DEFAULT_MAX_POWER_W: f64 = 1500.0;

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Samples per second; None: no sampling, only the wrap guard while windows are open.
    pub sample_hz: Option<f64>,
    /// Samples kept in the ring buffer; the oldest are overwritten.
    pub capacity: usize,
    /// See DEFAULT_MAX_POWER_W.
    pub max_power_w: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            sample_hz: None,
            capacity: 60_000,
            max_power_w: DEFAULT_MAX_POWER_W,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamplerStats {
    /// Reads made by the thread.
    pub samples: u64,
    /// Deadlines that passed before the thread could read.
    pub missed: u64,
    /// Samples overwritten in the ring before anyone read them out.
    pub dropped: u64,
    /// Reads that failed (the sample is skipped).
    pub read_errors: u64,
    /// CPU time the thread has used.
    pub cpu_ns: u64,
    /// Nanoseconds between reads (the sampling period, or the wrap guard's).
    pub period_ns: u64,
}

/// A total in the ring that nothing measured (a sample before the first refresh a stepped
/// counter can place, or older than the refreshes at hand): NaN in the trace.
const UNKNOWN: u64 = u64::MAX;

/// Refreshes copied out of a log at a time, to re-express the samples since the last look: the
/// new ones and two before them (for the interpolation and the period's narrowing).
const TRACE_STEPS: usize = 32;

/// A domain whose counter refreshes in steps (it keeps a refresh log): its column holds the
/// energy interpolated between refreshes, up to `written_ns`; the rows after it hold the raw
/// reading until the refresh after them is seen, and read as unknown.
struct SteppedColumn {
    /// The domain's index, and its source and index there (for its log).
    domain: usize,
    source: usize,
    index: usize,
    /// The log's refresh count when last looked at.
    count: u64,
    /// Rows at or before this instant are final.
    until_ns: u64,
    /// Rows at or before this instant hold interpolated energy (those after `until_ns` may
    /// be written again when the next refresh narrows the newest one's place).
    written_ns: u64,
}

/// Samples in arrival order: each row is t_ns then every domain's cumulative total.
struct Ring {
    width: usize,
    capacity: usize,
    data: Vec<u64>,
    /// Index of the next row to write.
    head: usize,
    len: usize,
    stepped: Vec<SteppedColumn>,
}

impl Ring {
    fn new(width: usize, capacity: usize, stepped: Vec<SteppedColumn>) -> Self {
        Ring {
            width,
            capacity,
            data: vec![0; width * capacity],
            head: 0,
            len: 0,
            stepped,
        }
    }

    /// Re-expresses the stepped counters' samples that a refresh seen since the last call
    /// places: each as its counter's energy interpolated at the sample's time. Allocates
    /// nothing: the newest refreshes are copied to the stack and narrowed there.
    fn resolve_steps(&mut self, meter: &Meter) {
        let mut buf = [Step {
            lo_ns: 0,
            hi_ns: 0,
            total: 0,
        }; TRACE_STEPS];
        for c in 0..self.stepped.len() {
            let col = &self.stepped[c];
            let (source, index, seen) = (col.source, col.index, col.count);
            let Some(Some((count, n, period))) =
                meter.with_log(source, index, |log| newest_steps(log, seen, &mut buf))
            else {
                continue;
            };
            self.place(c, count, &mut buf[..n], period);
        }
    }

    /// Writes column `c`'s rows that the refreshes `steps` (the newest of its log, which has
    /// seen `count` in all) place, narrowing their places with the period first.
    fn place(&mut self, c: usize, count: u64, steps: &mut [Step], period: Period) {
        refresh::tighten(steps, period);
        let newest = steps.last().map_or(0, Step::mid_ns);
        // The newest refresh's place still narrows when the next one comes (`tighten` reads
        // each refresh's successor), so the rows after the one before it are written again
        // then: rows made final against a place that later moved would sit beside rows
        // written against the new one, and their difference is no power at all.
        let settled = steps.len().checked_sub(2).map_or(0, |i| steps[i].mid_ns());
        let column = 1 + self.stepped[c].domain;
        let until = self.stepped[c].until_ns;
        for k in 0..self.len {
            let r = (self.head + self.capacity - 1 - k) % self.capacity;
            let row = &mut self.data[r * self.width..(r + 1) * self.width];
            if row[0] <= until {
                break;
            }
            if row[0] <= newest {
                row[column] = refresh::trace_energy(steps, row[0])
                    .map_or(UNKNOWN, |e| e.round().min(UNKNOWN as f64 - 1.0) as u64);
            }
        }
        let col = &mut self.stepped[c];
        col.count = count;
        col.until_ns = col.until_ns.max(settled);
        col.written_ns = col.written_ns.max(newest);
    }

    /// Stores a sample; returns true when it overwrote the oldest one.
    fn push(&mut self, snap: &Snapshot) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let row = &mut self.data[self.head * self.width..(self.head + 1) * self.width];
        row[0] = snap.t_ns;
        row[1..].copy_from_slice(&snap.totals);
        self.head = (self.head + 1) % self.capacity;
        let dropped = self.len == self.capacity;
        self.len = (self.len + 1).min(self.capacity);
        dropped
    }

    /// Rows oldest first.
    fn rows(&self) -> impl Iterator<Item = &[u64]> {
        let start = (self.head + self.capacity - self.len) % self.capacity.max(1);
        (0..self.len).map(move |i| {
            let r = (start + i) % self.capacity;
            &self.data[r * self.width..(r + 1) * self.width]
        })
    }
}

/// The refreshes a log has seen since it had seen `seen` (and two before them, for the
/// interpolation and the period's narrowing), copied into `buf`: the log's count, how many were
/// copied, and its period; None where it has seen none since.
fn newest_steps(log: &StepLog, seen: u64, buf: &mut [Step]) -> Option<(u64, usize, Period)> {
    let count = log.count();
    if count == seen {
        return None;
    }
    let want = (count.saturating_sub(seen) as usize)
        .saturating_add(2)
        .min(buf.len());
    Some((count, log.copy_newest(&mut buf[..want]), log.period()))
}

#[derive(Default)]
struct Control {
    stop: bool,
    pause: bool,
    paused: bool,
}

struct Shared {
    meter: Arc<Meter>,
    sampling: bool,
    period_ns: u64,
    ring: Mutex<Ring>,
    open_windows: AtomicUsize,
    control: Mutex<Control>,
    wake: Condvar,
    /// Changed after every change to `control`: the thread sleeps to its next deadline on this
    /// word, so that a stop or pause ends the sleep instead of waiting for the deadline.
    requests: AtomicU32,
    samples: AtomicU64,
    missed: AtomicU64,
    dropped: AtomicU64,
    read_errors: AtomicU64,
    /// The thread's CPU clock, readable from any thread.
    cpu_clock: Mutex<Option<libc::clockid_t>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected state stays consistent across a panic (plain counters and flags).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Sampler {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Ends the thread's sleep so that it looks at `control` now. Called after changing it.
    fn interrupt_sleep(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the word is a live, aligned u32; FUTEX_WAKE only reads its address.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.requests.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            )
        };
    }
}

impl Sampler {
    /// Starts the heartbeat for `meter`, or returns None when it has nothing to do: no sampling
    /// asked for and no counter that can wrap.
    pub fn start(meter: Arc<Meter>, config: &SamplerConfig) -> Option<Sampler> {
        let sampling = config.sample_hz.is_some_and(|hz| hz > 0.0);
        let guard = meter.guard_period_ns(config.max_power_w);
        let period_ns = match (config.sample_hz, guard) {
            (Some(hz), _) if hz > 0.0 => (1e9 / hz) as u64,
            (_, Some(ns)) => ns,
            _ => return None,
        };
        // A sampling period longer than the wrap guard's would let counters wrap twice.
        let period_ns = guard.map_or(period_ns, |g| period_ns.min(g)).max(1);
        let width = 1 + meter.domains().len();
        let capacity = if sampling { config.capacity } else { 0 };
        let stepped = (0..meter.domains().len())
            .filter_map(|domain| {
                let (source, index) = meter.locate(domain);
                meter.step_period(source, index).map(|_| SteppedColumn {
                    domain,
                    source,
                    index,
                    count: 0,
                    until_ns: 0,
                    written_ns: 0,
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            meter,
            sampling,
            period_ns,
            ring: Mutex::new(Ring::new(width, capacity, stepped)),
            open_windows: AtomicUsize::new(0),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            requests: AtomicU32::new(0),
            samples: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            cpu_clock: Mutex::new(None),
        });
        let sampler = Sampler {
            thread: Mutex::new(Some(spawn(shared.clone()))),
            shared,
        };
        Some(sampler)
    }

    pub fn sampling(&self) -> bool {
        self.shared.sampling
    }

    /// A window opened: the wrap guard reads at each of its ticks until the window closes.
    ///
    /// Only an atomic increment, no wakeup: the guard ticks every period whether or not
    /// windows are open, and a period is at most half the fastest wrap, so the first tick
    /// after a window opens still comes before any counter can wrap twice.
    pub fn window_opened(&self) {
        self.shared.open_windows.fetch_add(1, Ordering::SeqCst);
    }

    pub fn window_closed(&self) {
        let _ = self
            .shared
            .open_windows
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Windows open now (the wrap guard reads while there are any).
    pub fn open_windows(&self) -> usize {
        self.shared.open_windows.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> SamplerStats {
        let s = &self.shared;
        SamplerStats {
            samples: s.samples.load(Ordering::Relaxed),
            missed: s.missed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            read_errors: s.read_errors.load(Ordering::Relaxed),
            cpu_ns: lock(&s.cpu_clock).map_or(0, clock_ns),
            period_ns: s.period_ns,
        }
    }

    /// (rows, width) of the trace the ring holds now: width is 1 + the number of domains.
    pub fn trace_len(&self) -> (usize, usize) {
        let ring = lock(&self.shared.ring);
        (ring.len, ring.width)
    }

    /// Writes the samples in the ring, oldest first, straight into `out` (row-major, each row
    /// t in seconds then each domain's cumulative energy in joules). Returns the rows written.
    /// A counter that refreshes in steps gives its energy interpolated between the refreshes
    /// around each sample; NaN where they are not known yet (after the last refresh seen, or
    /// before the first one placed).
    pub fn trace_into(&self, out: &mut [f64]) -> usize {
        self.fill(out.len(), |i, v| out[i] = v)
    }

    /// As `trace_into`, as native-endian f64 bytes: lets a caller fill a foreign buffer (a
    /// Python bytes object) in the same single pass.
    pub fn trace_into_bytes(&self, out: &mut [u8]) -> usize {
        self.fill(out.len() / 8, |i, v| {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes())
        })
    }

    fn fill(&self, room: usize, mut put: impl FnMut(usize, f64)) -> usize {
        let ring = lock(&self.shared.ring);
        let domains = self.shared.meter.domains();
        let rows = ring.len.min(room / ring.width);
        for (r, row) in ring.rows().take(rows).enumerate() {
            let base = r * ring.width;
            put(base, row[0] as f64 * 1e-9);
            for (k, (d, &total)) in domains.iter().zip(&row[1..]).enumerate() {
                put(base + 1 + k, total as f64 / d.units_per_joule);
            }
            for col in &ring.stepped {
                if row[0] > col.written_ns || row[1 + col.domain] == UNKNOWN {
                    put(base + 1 + col.domain, f64::NAN);
                }
            }
        }
        rows
    }

    /// Stops the thread where it is safe to fork: not inside a read, holding no lock.
    pub fn pause(&self) {
        let mut c = lock(&self.shared.control);
        c.pause = true;
        self.shared.wake.notify_all();
        self.shared.interrupt_sleep();
        let limit = Duration::from_nanos(self.shared.period_ns.saturating_mul(2))
            .max(Duration::from_millis(100));
        let (g, _) = self
            .shared
            .wake
            .wait_timeout_while(c, limit, |c| !c.paused)
            .unwrap_or_else(|p| p.into_inner());
        drop(g);
    }

    pub fn resume(&self) {
        let mut c = lock(&self.shared.control);
        c.pause = false;
        self.shared.wake.notify_all();
        self.shared.interrupt_sleep();
    }

    /// In a child after fork: the thread did not survive it; start a new one.
    pub fn restart_after_fork(&self) {
        {
            let mut c = lock(&self.shared.control);
            *c = Control::default();
        }
        *lock(&self.shared.cpu_clock) = None;
        let mut t = lock(&self.thread);
        if let Some(old) = t.take() {
            // Joining a thread of the parent process would wait forever.
            std::mem::forget(old);
        }
        *t = Some(spawn(self.shared.clone()));
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        {
            let mut c = lock(&self.shared.control);
            c.stop = true;
            self.shared.wake.notify_all();
            self.shared.interrupt_sleep();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn spawn(shared: Arc<Shared>) -> JoinHandle<()> {
    crate::threads::spawn_quiet("carbonfast-sampler", move || run(&shared))
        .expect("spawning the sampler thread")
}

fn run(shared: &Shared) {
    *lock(&shared.cpu_clock) = this_thread_cpu_clock();
    let mut snap = Snapshot::default();
    let _ = shared.meter.read_into(&mut snap); // sizes the snapshot once
    let period = shared.period_ns;
    let mut deadline = monotonic_ns();
    loop {
        // Read before the control flags are looked at, so that a request made after that
        // look changes the word and ends the sleep below.
        let requests = shared.requests.load(Ordering::SeqCst);
        match wait_until_needed(shared) {
            Wake::Stop => return,
            Wake::Resumed => deadline = monotonic_ns(),
            Wake::Go => {}
        }
        if !sleep_until_or_requested(&shared.requests, requests, deadline + period) {
            continue; // a stop or pause: see to it first
        }
        deadline += period;
        let now = monotonic_ns();
        if now >= deadline + period {
            let late = (now - deadline) / period;
            shared.missed.fetch_add(late, Ordering::Relaxed);
            deadline += late * period;
        }
        if !shared.sampling && shared.open_windows.load(Ordering::SeqCst) == 0 {
            continue; // a guard tick with no window open: nothing can be lost
        }
        match shared.meter.sample_into(&mut snap) {
            Ok(()) => {
                shared.samples.fetch_add(1, Ordering::Relaxed);
                if shared.sampling {
                    let mut ring = lock(&shared.ring);
                    if ring.push(&snap) {
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    ring.resolve_steps(&shared.meter);
                }
            }
            Err(_) => {
                shared.read_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

enum Wake {
    Go,
    /// Came back from idling or a pause: the schedule restarts from now.
    Resumed,
    Stop,
}

fn wait_until_needed(shared: &Shared) -> Wake {
    let mut c = lock(&shared.control);
    let mut resumed = false;
    loop {
        if c.stop {
            return Wake::Stop;
        }
        if c.pause {
            c.paused = true;
            shared.wake.notify_all();
            c = shared.wake.wait(c).unwrap_or_else(|p| p.into_inner());
            c.paused = false;
            resumed = true;
            continue;
        }
        return if resumed { Wake::Resumed } else { Wake::Go };
    }
}

/// Sleeps until `deadline_ns` (CLOCK_MONOTONIC) unless `word` changes from `seen` first.
/// Returns true when the deadline came. FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC
/// timeout, so this keeps the rate of clock_nanosleep with TIMER_ABSTIME at the same cost: one
/// system call per sleep.
fn sleep_until_or_requested(word: &AtomicU32, seen: u32, deadline_ns: u64) -> bool {
    let ts = timespec_of(deadline_ns);
    loop {
        if word.load(Ordering::SeqCst) != seen {
            return false;
        }
        // SAFETY: the word is a live, aligned u32, `ts` a valid timespec; the kernel only
        // reads both.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if rc == 0 {
            continue; // woken: by a request, or spuriously; the word says which
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ETIMEDOUT) => return true,
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            // No futex (a sandbox that filters it): sleep the plain way.
            _ => {
                sleep_until(deadline_ns);
                return true;
            }
        }
    }
}

fn timespec_of(t_ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    }
}

pub(crate) fn sleep_until(deadline_ns: u64) {
    let ts = timespec_of(deadline_ns);
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

fn this_thread_cpu_clock() -> Option<libc::clockid_t> {
    let mut id: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid for the calling thread; `id` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
    (rc == 0).then_some(id)
}

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; a stale clock id (thread gone) makes the call fail, not UB.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    /// Raw units a refresh adds (a counter refreshing every 10 ms at a steady power).
    const STEP: u64 = 1_000_000;

    fn push_rows(ring: &mut Ring, from_ns: u64, to_ns: u64, raw: u64) {
        let mut snap = Snapshot {
            totals: vec![raw],
            ..Snapshot::default()
        };
        let mut t = from_ns;
        while t < to_ns {
            snap.t_ns = t;
            ring.push(&snap);
            t += 250 * US;
        }
    }

    fn resolve(ring: &mut Ring, log: &StepLog) {
        let mut buf = [Step {
            lo_ns: 0,
            hi_ns: 0,
            total: 0,
        }; TRACE_STEPS];
        if let Some((count, n, period)) = newest_steps(log, ring.stepped[0].count, &mut buf) {
            ring.place(0, count, &mut buf[..n], period);
        }
    }

    #[test]
    fn a_refresh_whose_place_narrows_later_leaves_no_spike_in_the_trace() {
        // A counter refreshing every 10 ms (at 5.5, 15 and 25 ms), sampled every 250 µs. The
        // refresh at 15 ms is seen loosely, between reads at 14 and 18 ms, and placed with the
        // period from the one before (mid 15.5 ms); the next, seen tightly, narrows it again
        // (mid 15.2 ms). Rows made final against the first place beside rows written against
        // the second showed twice the power where the two met.
        let mut log = StepLog::new(Period::new(10 * MS));
        let mut ring = Ring::new(
            2,
            1_000,
            vec![SteppedColumn {
                domain: 0,
                source: 0,
                index: 0,
                count: 0,
                until_ns: 0,
                written_ns: 0,
            }],
        );
        log.observe(0, 400 * US, 500 * US);
        log.observe(0, 5_350 * US, 5_400 * US);
        log.observe(STEP, 5_600 * US, 5_650 * US);
        log.observe(STEP, 14 * MS, 14_050 * US);
        log.observe(2 * STEP, 17_950 * US, 18 * MS);
        push_rows(&mut ring, 250 * US, 18 * MS, 0);
        resolve(&mut ring, &log);
        log.observe(2 * STEP, 24_850 * US, 24_900 * US);
        log.observe(3 * STEP, 25_050 * US, 25_100 * US);
        push_rows(&mut ring, 18 * MS, 26 * MS, 0);
        resolve(&mut ring, &log);

        // As the trace reads them: rows after the newest refresh's place are unknown yet.
        let written = ring.stepped[0].written_ns;
        let known: Vec<(u64, u64)> = ring
            .rows()
            .filter(|r| r[1] != UNKNOWN && r[0] <= written)
            .map(|r| (r[0], r[1]))
            .collect();
        assert!(known.len() > 70, "{} rows placed", known.len());
        // A refresh's worth over 10 ms: about STEP / 10 a millisecond, 250 µs at a time.
        let steady = STEP as f64 / 10.0 / 4.0;
        for w in known.windows(2) {
            let rise = w[1].1 as f64 - w[0].1 as f64;
            assert!(
                (0.5 * steady..=1.5 * steady).contains(&rise),
                "{rise} between {} and {} µs (steady: {steady})",
                w[0].0 / US,
                w[1].0 / US
            );
        }
    }
}
