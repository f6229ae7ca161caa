"""How `run` starts the command and passes signals on to it while it runs."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from typing import Any

# A SIGINT typed at the terminal reaches the whole foreground process group, the child
# included; the kernel marks such signals SI_KERNEL. Only signals sent to carbonfast alone
# (kill, a job scheduler) need forwarding.
_SI_KERNEL = 0x80
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGWINCH,
)


class CannotStart(Exception):
    """The command could not be started; `code` is the shell's code for why."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_forwarding_signals(command: list[str], mask: Any, watch: Any = None) -> int:
    """Runs `command` to completion; returns its return code (negative: killed by signal).
    The signals in FORWARDED must be blocked in this thread: they are taken here and passed
    on, and carbonfast does not return while the command lives. `watch.tick(pid)` is called
    every watch.PERIOD_S while it runs."""
    from carbonfast import guard

    guard.tell("starting")
    try:
        # The child gets the signal mask carbonfast started with, and the default action for
        # the signals Python ignores (SIGPIPE), as a shell would give it.
        pid = os.posix_spawnp(
            command[0],
            command,
            os.environ,
            setsigmask=mask,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except FileNotFoundError:
        raise CannotStart(f"command not found: {command[0]}", 127) from None
    except PermissionError:
        raise CannotStart(f"permission denied: {command[0]}", 126) from None
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            raise CannotStart(
                f"cannot execute {command[0]}: not a program, and no #! line naming an "
                "interpreter; add one, or run it with its interpreter",
                126,
            ) from None
        raise CannotStart(f"cannot execute {command[0]}: {e.strerror}", 126) from None
    guard.tell(f"started {pid}")
    if watch is not None:
        watch.tick(pid)
    waited = (*FORWARDED, signal.SIGCHLD)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            guard.tell(f"ended {code if code >= 0 else 128 - code}")
            return code
        if watch is not None:
            got = signal.sigtimedwait(waited, watch.PERIOD_S)
            if got is None:
                watch.tick(pid)
                continue
            info = got
        else:
            info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo in (signal.SIGINT, signal.SIGWINCH) and info.si_code == _SI_KERNEL:
            continue  # from the terminal: the child got it too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, info.si_signo)
