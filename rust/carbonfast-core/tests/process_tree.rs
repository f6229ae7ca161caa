//! The process scope follows running descendants, on a fake /proc tree: children and
//! grandchildren that run are counted as they run, time handed to a parent when a child is
//! reaped is counted once, and the total never goes back.
//!
//! The fake tree only adds running processes: what getrusage reports for the test process
//! itself is real, so each check takes it off again (`tree_seconds`).

use carbonfast_core::cputime::CpuTime;
use carbonfast_core::Scope;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Clock ticks per second of /proc/PID/stat.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn rusage_s(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable; the selector is valid.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The seconds the fake tree adds to the real process's own.
fn tree_seconds(ct: &CpuTime) -> f64 {
    let total = ct.seconds().unwrap();
    total - rusage_s(libc::RUSAGE_SELF) - rusage_s(libc::RUSAGE_CHILDREN)
}

/// Whether `seconds` is `ticks` clock ticks, give or take the test's own CPU time between the
/// reading and the getrusage after it.
fn about(seconds: f64, ticks: u64) -> bool {
    (seconds - ticks as f64 / ticks_per_s()).abs() < 0.05
}

const ROOT: u32 = 100;

struct FakeProc {
    _dir: tempfile::TempDir,
    root: PathBuf,
    children_files: bool,
}

impl FakeProc {
    /// A /proc whose `self` is pid 100 with threads 100 and 101.
    fn new(children_files: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proc");
        let fake = FakeProc {
            _dir: dir,
            root,
            children_files,
        };
        fake.thread(ROOT, 101);
        fake.process(ROOT, 1, 'S', [5, 5, 0, 0]);
        symlink("100", fake.root.join("self")).unwrap();
        fake
    }

    /// Writes (or rewrites) a process: its stat with utime, stime, cutime, cstime in ticks,
    /// and its main thread. Threads added before (`thread`) are in its stat's count.
    fn process(&self, pid: u32, ppid: u32, state: char, times: [u64; 4]) {
        self.thread(pid, pid);
        let dir = self.root.join(pid.to_string());
        let threads = fs::read_dir(dir.join("task")).unwrap().count();
        let [ut, st, cut, cst] = times;
        let stat = format!(
            "{pid} (work (x) {pid}) {state} {ppid} {pid} {pid} 0 -1 4194304 10 0 0 0 \
             {ut} {st} {cut} {cst} 20 0 {threads} 0 777 1000000 100 18446744073709551615\n"
        );
        fs::write(dir.join("stat"), stat).unwrap();
    }

    fn thread(&self, pid: u32, tid: u32) {
        let dir = self.root.join(format!("{pid}/task/{tid}"));
        fs::create_dir_all(&dir).unwrap();
        let children = dir.join("children");
        if self.children_files && !children.exists() {
            fs::write(children, "").unwrap();
        }
    }

    /// Lists `children` as started by thread `tid` of `pid`.
    fn children(&self, pid: u32, tid: u32, children: &[u32]) {
        if !self.children_files {
            return; // the scan finds them by their parent links
        }
        let text: String = children.iter().map(|c| format!("{c} ")).collect();
        fs::write(self.root.join(format!("{pid}/task/{tid}/children")), text).unwrap();
    }

    fn exit(&self, pid: u32) {
        fs::remove_dir_all(self.root.join(pid.to_string())).unwrap();
    }

    fn open(&self) -> CpuTime {
        CpuTime::open(Scope::Process, &self.root, Path::new("/nonexistent")).unwrap()
    }
}

/// Root 100 runs 200 (thread 100) and 400 (started by thread 101); 200 runs 210.
fn family(fake: &FakeProc) {
    fake.process(200, ROOT, 'R', [100, 20, 0, 0]);
    fake.process(210, 200, 'R', [50, 0, 0, 0]);
    fake.process(400, ROOT, 'S', [30, 0, 0, 0]);
    fake.children(ROOT, 100, &[200]);
    fake.children(ROOT, 101, &[400]);
    fake.children(200, 200, &[210]);
}

#[test]
fn running_children_and_grandchildren_count_while_they_run() {
    for children_files in [true, false] {
        let fake = FakeProc::new(children_files);
        let ct = fake.open();
        assert!(about(tree_seconds(&ct), 0), "no descendants yet");
        family(&fake);
        assert!(about(tree_seconds(&ct), 200), "{children_files}");
        // They go on running: their time shows now, not when they are reaped.
        fake.process(200, ROOT, 'R', [300, 40, 0, 0]);
        fake.process(210, 200, 'R', [250, 10, 0, 0]);
        assert!(about(tree_seconds(&ct), 630), "{children_files}");
        // A new child appears, under the other thread.
        fake.process(500, ROOT, 'R', [70, 0, 0, 0]);
        fake.children(ROOT, 101, &[400, 500]);
        assert!(about(tree_seconds(&ct), 700), "{children_files}");
        // 200 starts a thread, which starts a process of its own.
        fake.thread(200, 201);
        fake.process(200, ROOT, 'R', [300, 40, 0, 0]);
        fake.process(230, 200, 'R', [30, 0, 0, 0]);
        fake.children(200, 201, &[230]);
        assert!(about(tree_seconds(&ct), 730), "{children_files}");
    }
}

#[test]
fn a_grandchild_reaped_by_its_parent_is_counted_once() {
    for children_files in [true, false] {
        let fake = FakeProc::new(children_files);
        family(&fake);
        let ct = fake.open();
        assert!(about(tree_seconds(&ct), 200));
        // 210 exits: a zombie keeps its times until reaped.
        fake.process(210, 200, 'Z', [50, 0, 0, 0]);
        assert!(about(tree_seconds(&ct), 200));
        // Being reaped ('X'), its time is already in its parent's cutime.
        fake.process(200, ROOT, 'R', [100, 20, 50, 0]);
        fake.process(210, 200, 'X', [50, 0, 0, 0]);
        assert!(about(tree_seconds(&ct), 200), "{children_files}");
        fake.exit(210);
        fake.children(200, 200, &[]);
        assert!(about(tree_seconds(&ct), 200), "{children_files}");
        // And 200 goes on from there.
        fake.process(200, ROOT, 'R', [160, 20, 50, 0]);
        assert!(about(tree_seconds(&ct), 260), "{children_files}");
    }
}

#[test]
fn a_child_whose_time_leaves_the_tree_never_takes_the_total_back() {
    let fake = FakeProc::new(true);
    family(&fake);
    let ct = fake.open();
    assert!(about(tree_seconds(&ct), 200));
    let before = ct.seconds().unwrap();
    // 200 exits and nobody here reaps it; 210 now belongs to init. Their 170 ticks are no
    // longer this process's, but what was counted stays counted.
    fake.exit(200);
    fake.process(210, 1, 'R', [90, 0, 0, 0]);
    fake.children(ROOT, 100, &[]);
    assert!(ct.seconds().unwrap() >= before);
    assert!(ct.seconds().unwrap() - before < 0.05);
}

#[test]
fn a_pid_reused_by_another_process_is_not_counted() {
    let fake = FakeProc::new(true);
    family(&fake);
    // 400 was listed as a child, but the pid now names a process whose parent is 1, with a
    // child of its own: neither is this process's.
    fake.process(400, 1, 'R', [1000, 0, 0, 0]);
    fake.process(410, 400, 'R', [1000, 0, 0, 0]);
    fake.children(400, 400, &[410]);
    let ct = fake.open();
    assert!(about(tree_seconds(&ct), 170));
}

#[test]
fn malformed_and_endless_files_are_skipped_without_hanging() {
    let fake = FakeProc::new(true);
    family(&fake);
    // A stat that is not one, a children file too long to be real, and a process listed
    // under itself: each is bounded, and what is sound is still counted.
    fs::write(fake.root.join("400/stat"), "garbage").unwrap();
    fs::write(
        fake.root.join("210/task/210/children"),
        "210 ".repeat(1 << 19),
    )
    .unwrap();
    fake.process(600, ROOT, 'R', [1, 0, 0, 0]);
    fs::write(fake.root.join("600/task/600/children"), "600 600 100").unwrap();
    fake.children(ROOT, 100, &[200, 600]);
    let ct = fake.open();
    let t = std::time::Instant::now();
    assert!(about(tree_seconds(&ct), 171));
    assert!(t.elapsed().as_secs() < 5);
}

#[test]
fn a_process_listed_under_itself_ends_the_walk_at_a_bound() {
    // A `self` that is a plain directory: this process's pid is unknown, so its children's
    // parent links cannot be checked, and 700, its own parent, lists itself as its child.
    // Beside it, 800 is a sound child.
    let fake = FakeProc::new(true);
    fs::remove_file(fake.root.join("self")).unwrap();
    fs::create_dir_all(fake.root.join("self/task/1")).unwrap();
    fs::write(fake.root.join("self/task/1/children"), "700 800").unwrap();
    fake.process(700, 700, 'R', [0, 0, 0, 0]);
    fake.children(700, 700, &[700]);
    fake.process(800, 1, 'R', [100, 0, 0, 0]);
    let ct = fake.open();
    let t = std::time::Instant::now();
    let own_before = rusage_s(libc::RUSAGE_SELF) + rusage_s(libc::RUSAGE_CHILDREN);
    let seen = ct.seconds().unwrap();
    let own_after = rusage_s(libc::RUSAGE_SELF) + rusage_s(libc::RUSAGE_CHILDREN);
    assert!(t.elapsed().as_secs() < 30);
    // The long walk's own CPU time is the process's too: bracket the tree's part with it.
    let one_second = 100.0 / ticks_per_s();
    assert!(seen - own_before > one_second - 0.05, "{seen} {own_before}");
    assert!(seen - own_after < one_second + 0.05, "{seen} {own_after}");
}
