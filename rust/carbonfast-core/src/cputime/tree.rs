//! CPU time of this process and all its descendants, running ones included.
//!
//! getrusage sees this process and the children it has waited for, so the CPU time of a child
//! that is still running (the command `carbonfast run` measures, a worker pool) appears only
//! when it exits. The running descendants are therefore read from /proc: each one's
//! utime + stime + cutime + cstime, which is its own time plus that of the children it has
//! waited for. A process's time is then in exactly one place at any moment: in its own stat
//! file while it runs or is a zombie, and in its parent's cutime (or in this process's
//! RUSAGE_CHILDREN) once reaped.
//!
//! Descendants are found through /proc/PID/task/TID/children, or, on kernels built without
//! it, by scanning every /proc/PID/stat for parent links. Every file is read through a buffer
//! kept between readings, so that a reading allocates nothing once the buffers have grown.

use crate::source::parse_u64;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// A walk stops after this many processes: a real tree is far smaller, and a fake /proc that
/// lists a process under itself or many times over must not make a reading run without end.
const MAX_PROCESSES: usize = 1 << 16;
/// Longest /proc/PID/stat accepted (a real one is under 400 bytes).
const STAT_LIMIT: usize = 4096;
/// Longest children list accepted: 128k children of one thread.
const CHILDREN_LIMIT: usize = 1 << 20;
/// Where a walk reads reaped time twice as fast as it can be sure of, it tries again, this
/// many times at most.
const ATTEMPTS: usize = 3;

pub(crate) struct ProcessTree {
    /// The /proc root as bytes, for paths built in place.
    root: Vec<u8>,
    /// Whether the root is the kernel's own /proc: only then may the kernel be asked directly
    /// whether this process has children at all.
    real_proc: bool,
    ticks_per_s: f64,
    state: Mutex<State>,
}

/// What a reading needs between calls: the buffers, and what this process's count has reached.
struct State {
    /// The process the count is for; a child after fork starts its own.
    pid: libc::pid_t,
    /// This process's pid as the /proc root shows it, for checking its children's parent
    /// links; None where the root has no `self` link (a fake tree).
    root_pid: Option<u32>,
    /// Whether the kernel has children files (CONFIG_PROC_CHILDREN); otherwise scan.
    children_files: bool,
    /// The highest total given so far: a reading never goes below it.
    highest_s: f64,
    path: Vec<u8>,
    text: Vec<u8>,
    dirents: Vec<u8>,
    tids: Vec<u32>,
    /// Processes still to visit: (pid, the parent it must name).
    stack: Vec<(u32, Option<u32>)>,
    /// For the scan: (ppid, pid, ticks) of every live process.
    procs: Vec<(u32, u32, u64)>,
}

/// One process's /proc/PID/stat, what a walk needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub ticks: u64,
    /// Being reaped ('X'): its time may already be in its parent's.
    pub dead: bool,
    pub threads: u32,
}

impl ProcessTree {
    pub(crate) fn new(proc_root: &Path) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ProcessTree {
            root: proc_root.as_os_str().as_bytes().to_vec(),
            real_proc: proc_root == Path::new("/proc"),
            ticks_per_s: ticks,
            state: Mutex::new(State {
                pid: 0,
                root_pid: None,
                children_files: true,
                highest_s: 0.0,
                path: Vec::with_capacity(128),
                text: Vec::with_capacity(STAT_LIMIT),
                dirents: vec![0; 32 << 10],
                tids: Vec::new(),
                stack: Vec::new(),
                procs: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is buffers and a running maximum: consistent across a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// CPU seconds of this process and its descendants: what getrusage reports for this
    /// process and its reaped children, plus the running descendants' time.
    ///
    /// Never lower than an earlier reading in the same process. A walk can miss a process
    /// (reaped by its parent between the walk's look at the parent and at it; or orphaned:
    /// its parent exited first and it now belongs to init), but it does not count one twice
    /// (see `scan_parent_links` for the one exception); the running maximum keeps such a dip
    /// from showing, and the next reading counts the missed time again where it went, except
    /// an orphan's, which is no longer this process's.
    pub(crate) fn seconds(&self) -> f64 {
        let mut st = self.lock();
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        if st.pid != pid {
            self.start_counting(&mut st, pid);
        }
        let own = rusage_seconds(libc::RUSAGE_SELF);
        let (reaped, live_ticks) = self.reaped_and_live(&mut st);
        let total = own + reaped + live_ticks as f64 / self.ticks_per_s;
        st.highest_s = st.highest_s.max(total);
        st.highest_s
    }

    /// At the first reading, and in a child after fork: its getrusage starts again from zero.
    fn start_counting(&self, st: &mut State, pid: libc::pid_t) {
        st.pid = pid;
        st.highest_s = 0.0;
        st.root_pid = self.self_link(st);
        st.children_files = self.has_children_files(st);
    }

    /// RUSAGE_CHILDREN and the live descendants' ticks, read so that a child reaped by this
    /// process during the walk is counted once: the walk either saw it (and the reaped time
    /// from before the walk lacks it) or did not (and is retried once the reaped time is
    /// steady).
    fn reaped_and_live(&self, st: &mut State) -> (f64, u64) {
        let mut result = (0.0, 0);
        for _ in 0..ATTEMPTS {
            let before = rusage_seconds(libc::RUSAGE_CHILDREN);
            if self.real_proc && !has_children() {
                return (before, 0);
            }
            let live = self.live_ticks(st);
            result = (before, live);
            if rusage_seconds(libc::RUSAGE_CHILDREN) == before {
                break;
            }
        }
        result
    }

    fn live_ticks(&self, st: &mut State) -> u64 {
        if st.children_files {
            self.walk_children_files(st)
        } else {
            match st.root_pid {
                Some(root) => self.scan_parent_links(st, root),
                None => 0,
            }
        }
    }

    /// Depth first from this process. A process's main thread's children are listed before its
    /// stat is read, so that a child reaped in between is found in the parent's cutime; other
    /// threads' only where the stat says there are other threads, which saves listing the
    /// threads of every single-threaded process.
    fn walk_children_files(&self, st: &mut State) -> u64 {
        st.stack.clear();
        let root = st.root_pid;
        self.push_threads_children(st, None, None, root);
        let mut total = 0u64;
        let mut visited = 0;
        while let Some((pid, parent)) = st.stack.pop() {
            visited += 1;
            if visited > MAX_PROCESSES {
                break;
            }
            if Some(pid) == root {
                continue; // this process, listed under a descendant of its own in a fake tree
            }
            let mark = st.stack.len();
            self.push_thread_children(st, Some(pid), pid, Some(pid));
            match self.read_stat(st, pid) {
                Some(s) if !s.dead && parent.is_none_or(|p| p == s.ppid) => {
                    total += s.ticks;
                    if s.threads > 1 {
                        self.push_threads_children(st, Some(pid), Some(pid), Some(pid));
                    }
                }
                // Gone, being reaped, or the pid now names another process: neither it nor
                // what its children file listed is ours.
                _ => st.stack.truncate(mark),
            }
        }
        total
    }

    /// Pushes the children of every thread of `pid` (None: this process) but `skip`, each to
    /// be checked against `parent`.
    fn push_threads_children(
        &self,
        st: &mut State,
        pid: Option<u32>,
        skip: Option<u32>,
        parent: Option<u32>,
    ) {
        self.proc_path(&mut st.path, pid, &[b"task"]);
        st.tids.clear();
        let State {
            path,
            dirents,
            tids,
            ..
        } = st;
        if for_each_number(path, dirents, |tid| tids.push(tid)).is_err() {
            return;
        }
        for i in 0..st.tids.len() {
            let tid = st.tids[i];
            if Some(tid) != skip {
                self.push_thread_children(st, pid, tid, parent);
            }
        }
    }

    /// Pushes the children thread `tid` of `pid` (None: this process) started, each to be
    /// checked against `parent`.
    fn push_thread_children(
        &self,
        st: &mut State,
        pid: Option<u32>,
        tid: u32,
        parent: Option<u32>,
    ) {
        self.proc_path(&mut st.path, pid, &[b"task"]);
        push_number(&mut st.path, tid);
        push_segment(&mut st.path, b"children");
        if read_bounded(&mut st.path, &mut st.text, CHILDREN_LIMIT).is_err() {
            return;
        }
        for word in st.text.split(|b| b.is_ascii_whitespace()) {
            if st.stack.len() >= MAX_PROCESSES {
                return;
            }
            if let Some(child) = parse_u64(word).and_then(|n| u32::try_from(n).ok()) {
                st.stack.push((child, parent));
            }
        }
    }

    /// Without children files: every process's parent link, then the tree under `root`. Costs
    /// a stat read per process on the machine, not per descendant. /proc lists pids in
    /// ascending order, so a parent is usually read before its child, and a child reaped
    /// during the scan is missed rather than counted twice; only where pids have wrapped
    /// (a child with a lower pid than its parent) can it be counted in both, and the running
    /// maximum then holds that excess until real use overtakes it.
    fn scan_parent_links(&self, st: &mut State, root: u32) -> u64 {
        st.procs.clear();
        st.tids.clear();
        let State {
            path,
            dirents,
            tids,
            ..
        } = st;
        path.clear();
        path.extend_from_slice(&self.root);
        if for_each_number(path, dirents, |pid| tids.push(pid)).is_err() {
            return 0;
        }
        for i in 0..st.tids.len() {
            let pid = st.tids[i];
            if let Some(s) = self.read_stat(st, pid) {
                if !s.dead && st.procs.len() < MAX_PROCESSES {
                    st.procs.push((s.ppid, pid, s.ticks));
                }
            }
        }
        st.procs.sort_unstable();
        st.stack.clear();
        st.stack.push((root, None));
        let mut total = 0u64;
        let mut visited = 0;
        while let Some((parent, _)) = st.stack.pop() {
            let from = st.procs.partition_point(|&(ppid, _, _)| ppid < parent);
            for &(ppid, pid, ticks) in &st.procs[from..] {
                visited += 1;
                if ppid != parent || visited > MAX_PROCESSES {
                    break;
                }
                if pid != root {
                    total += ticks;
                    st.stack.push((pid, None));
                }
            }
        }
        total
    }

    fn read_stat(&self, st: &mut State, pid: u32) -> Option<ProcStat> {
        self.proc_path(&mut st.path, Some(pid), &[b"stat"]);
        read_bounded(&mut st.path, &mut st.text, STAT_LIMIT).ok()?;
        parse_stat(&st.text)
    }

    /// The pid the root's `self` link names.
    fn self_link(&self, st: &mut State) -> Option<u32> {
        self.proc_path(&mut st.path, None, &[]);
        st.path.push(0);
        let mut buf = [0u8; 32];
        // SAFETY: `path` is NUL-terminated; `buf` is writable for its length.
        let n =
            unsafe { libc::readlink(st.path.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
        st.path.pop();
        let n = usize::try_from(n).ok()?;
        parse_u64(&buf[..n]).and_then(|p| u32::try_from(p).ok())
    }

    /// False only where this process's threads exist and have no children file: a kernel
    /// without CONFIG_PROC_CHILDREN.
    fn has_children_files(&self, st: &mut State) -> bool {
        let State {
            path,
            dirents,
            tids,
            ..
        } = st;
        self.proc_path(path, None, &[b"task"]);
        tids.clear();
        if for_each_number(path, dirents, |tid| tids.push(tid)).is_err() {
            return true;
        }
        let Some(&tid) = tids.first() else {
            return true;
        };
        push_number(path, tid);
        push_segment(path, b"children");
        Path::new(OsStr::from_bytes(path)).exists()
    }

    /// Writes ROOT/PID/parts... (or ROOT/self/parts...) into `path`.
    fn proc_path(&self, path: &mut Vec<u8>, pid: Option<u32>, parts: &[&[u8]]) {
        path.clear();
        path.extend_from_slice(&self.root);
        match pid {
            Some(p) => push_number(path, p),
            None => push_segment(path, b"self"),
        }
        for part in parts {
            push_segment(path, part);
        }
    }
}

/// Parses /proc/PID/stat: the command name is in parentheses and may hold spaces and ')', so
/// fields are counted from the last ')'.
pub(crate) fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = fields.next()?;
    let ppid = u32::try_from(parse_u64(fields.next()?)?).ok()?;
    // pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt, then the four times.
    let mut fields = fields.skip(9);
    let mut ticks = 0u64;
    for _ in 0..4 {
        ticks = ticks.checked_add(parse_u64(fields.next()?)?)?;
    }
    // priority nice num_threads
    let threads = u32::try_from(parse_u64(fields.nth(2)?)?).ok()?;
    Some(ProcStat {
        ppid,
        ticks,
        dead: matches!(state, b"X" | b"x"),
        threads,
    })
}

/// Whether this process (any of its threads) has a child, running or not yet reaped: one
/// system call that leaves every child as it is, so that a process without children never
/// walks /proc.
fn has_children() -> bool {
    // SAFETY: an all-zero siginfo_t is valid, and waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL;
    // SAFETY: `info` is writable; WNOWAIT reaps nothing and WNOHANG never blocks.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, options) };
    !(rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF/CHILDREN are valid selectors.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn push_segment(path: &mut Vec<u8>, segment: &[u8]) {
    path.push(b'/');
    path.extend_from_slice(segment);
}

fn push_number(path: &mut Vec<u8>, n: u32) {
    path.push(b'/');
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.extend_from_slice(&digits[i..]);
}

/// Opens `path` (bytes without NUL) read-only. Non-blocking, so that a FIFO planted in a fake
/// tree reads as empty instead of stalling the open or the read; callers bound every read, so a
/// device cannot feed one without end either.
fn open_path(path: &mut Vec<u8>, flags: libc::c_int) -> io::Result<OwnedFd> {
    path.push(0);
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | flags,
        )
    };
    path.pop();
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the whole file at `path` into `buf`; a file longer than `limit` bytes is an error.
/// A read that returns less than it was given room for is taken as the end: procfs fills the
/// reader's buffer whole until then, so the common case costs one read, not two.
fn read_bounded(path: &mut Vec<u8>, buf: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let fd = open_path(path, 0)?;
    buf.clear();
    loop {
        if buf.len() > limit {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        if buf.capacity() == buf.len() {
            buf.reserve((limit + 1 - buf.len()).min(buf.len().max(256)));
        }
        let room = (buf.capacity() - buf.len()).min(limit + 1 - buf.len());
        // SAFETY: the spare capacity is writable for `room` bytes; `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().add(buf.len()).cast(), room) };
        match n {
            0 => return Ok(()),
            n if n > 0 => {
                // SAFETY: the kernel initialised `n` more bytes.
                unsafe { buf.set_len(buf.len() + n as usize) };
                if (n as usize) < room {
                    return Ok(());
                }
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Calls `f` with every entry of the directory at `path` whose name is a number (a pid or a
/// tid), read with getdents64 into `buf` so that nothing is allocated.
fn for_each_number(path: &mut Vec<u8>, buf: &mut [u8], mut f: impl FnMut(u32)) -> io::Result<()> {
    let dir = open_path(path, libc::O_DIRECTORY)?;
    loop {
        // SAFETY: `buf` is writable for its length; `dir` is an open directory.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        let mut at = 0usize;
        let end = n as usize;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name NUL-terminated.
        while at + 19 < end {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 || at + reclen > end {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(n) = parse_u64(name).and_then(|n| u32::try_from(n).ok()) {
                f(n);
            }
            at += reclen;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 3 0 5 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                ppid: 7,
                ticks: 11 + 22 + 33 + 44,
                dead: false,
                threads: 3,
            })
        );
        let dead = b"9 (x) X 1 9 9 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0\n";
        assert!(parse_stat(dead).unwrap().dead);
        assert_eq!(
            parse_stat(b"9 (x) S 1 9 9 0 -1 0 0 0 0 0 5 5 0 0 20 0"),
            None
        );
        assert_eq!(parse_stat(b"no parenthesis"), None);
    }

    #[test]
    fn numbers_are_written_into_paths_without_formatting() {
        let mut p = b"/proc".to_vec();
        push_number(&mut p, 0);
        push_number(&mut p, 4_294_967_295);
        assert_eq!(p, b"/proc/0/4294967295");
    }
}
