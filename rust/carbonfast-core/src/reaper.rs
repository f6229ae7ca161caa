//! Making a process the reaper of its orphaned descendants.

/// Makes the calling process the reaper of its descendants that lose their parent (Linux
/// PR_SET_CHILD_SUBREAPER): `carbonfast run`'s guard can then still wait for a command whose
/// measuring parent died. An error where the kernel refuses.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_orphaned_grandchild_comes_back_to_the_subreaper() {
        // In a child of the test process, so that the test process itself is left alone.
        // SAFETY: fork in a test; the child only makes syscalls and _exits.
        unsafe {
            let child = libc::fork();
            assert!(child >= 0);
            if child == 0 {
                let ok = super::become_subreaper().is_ok();
                let middle = libc::fork();
                if middle == 0 {
                    let grandchild = libc::fork();
                    if grandchild == 0 {
                        libc::usleep(50_000);
                        libc::_exit(7);
                    }
                    libc::_exit(0); // orphans the grandchild
                }
                let mut status = 0;
                libc::waitpid(middle, &mut status, 0);
                // The grandchild is now ours to reap, with its code.
                let got = libc::waitpid(-1, &mut status, 0);
                let code = if got > 0 && libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    99
                };
                libc::_exit(if ok && code == 7 { 0 } else { 1 });
            }
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
    }
}
