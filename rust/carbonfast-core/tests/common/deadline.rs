//! A watchdog for tests of code that must not hang: a hang fails the test instead of the run.

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a thread of its own and returns what it returns, or fails the test if it has
/// not finished within `secs` (the thread is left behind: it cannot be stopped).
pub fn finishes_within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}
