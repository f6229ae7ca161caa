//! Background threads that never take a signal meant for the process.
//!
//! The kernel delivers a process-directed signal (SIGTERM from `kill`, a job scheduler's
//! SIGUSR1) to any thread that does not block it. A thread of carbonfast's that took one would
//! run the default action, often ending the whole process, while the thread that waits for
//! signals (`carbonfast run` forwarding them to its command) never saw it. So every native
//! thread starts with all signals blocked: the mask is set around the spawn, which the new
//! thread inherits from its first instruction on.

use std::io;
use std::thread::{Builder, JoinHandle};

/// Spawns a named thread with every signal blocked.
pub fn spawn_quiet<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the sigset_t values are initialised by sigfillset/pthread_sigmask before use;
    // pthread_sigmask only changes the calling thread's mask, restored right after.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let spawned = Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_blocks_every_signal_and_the_caller_keeps_its_mask() {
        let blocked = |sig| {
            // SAFETY: reads the calling thread's mask into an initialised set.
            unsafe {
                let mut cur: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut cur);
                libc::sigismember(&cur, sig) == 1
            }
        };
        let before = blocked(libc::SIGTERM);
        let inside = spawn_quiet("t", move || {
            [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP].map(blocked)
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(inside, [true; 4]);
        assert_eq!(blocked(libc::SIGTERM), before);
    }
}
