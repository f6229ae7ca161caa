"""The process that keeps a command's exit code, whatever happens to the one measuring it.

`carbonfast run` loads vendor libraries (NVML, AMD SMI) into the process that measures. Such a
library can crash (a segfault in nvmlShutdown, `_exit` in its init), hang (nvmlInit on a GPU
fallen off the bus) or abort (a count of 2^30 devices), and in-process nothing can contain
that. So `run` splits in two at once, before anything is loaded:

- the guard (the process the shell started, whose exit code it waits for) loads nothing and
  only waits: it passes signals on, and learns from a pipe when the command starts and ends;
- the worker (a fork) measures, runs the command and writes the reports, as `run` always did.

The worker tells the guard `starting`, `started PID`, `ended CODE` and, last, `exit CODE`.
If it dies or hangs before the command starts, the guard runs the command itself, unmeasured;
if it dies while the command runs, the guard, the command's subreaper, waits for it; if it
dies or hangs after the command ended, the guard returns the command's code. Either way a
warning says what happened. The guard is a fork rather than a fresh interpreter so that the
split costs a millisecond, not an import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# How long the worker may take, after the command ended, to write its reports (a locked
# history waits up to 10 s) before the guard gives up on it and returns the command's code.
AFTER_END_S = 20.0
# How long the worker may take to start the command (discovery under its own deadlines).
BEFORE_START_S = 30.0

_SI_KERNEL = 0x80

# The write end of the pipe to the guard, in the worker; None elsewhere.
_to_guard: int | None = None


def tell(message: str) -> None:
    """Tells the guard how the command goes (a no-op where there is none)."""
    if _to_guard is not None:
        with contextlib.suppress(OSError):
            os.write(_to_guard, f"{message}\n".encode())


def run_guarded(
    work: Callable[[], int], command: list[str], forwarded: tuple[int, ...], mask: Any
) -> int:
    """Runs `work` (which measures and runs `command`, returning its exit code) in a forked
    worker, and returns the command's exit code from this process whatever the worker does.
    `forwarded` are the signals passed on to the worker (and by it to the command); they,
    and SIGCHLD, must be blocked by the caller; `mask` is the signal mask a command run here
    gets (the one carbonfast started with)."""
    global _to_guard
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    _subreaper()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _to_guard = write_end
        code = 1
        try:
            code = work()
        except (ValueError, OSError) as e:
            _say(f"carbonfast: {e}")
            code = 2
        except BaseException:
            import traceback

            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            tell(f"exit {code}")
            # Vendor libraries' own teardown (nvmlShutdown) runs at interpreter exit, and may
            # crash or hang there: the run is done, so it is skipped.
            with contextlib.suppress(BaseException):
                import atexit

                atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
    os.close(write_end)
    return _Guard(pid, read_end, command, forwarded, mask).watch()


class _Guard:
    def __init__(
        self, worker: int, pipe: int, command: list[str], forwarded: tuple[int, ...], mask: Any
    ) -> None:
        self.mask = mask
        self.worker = worker
        self.pipe = pipe
        self.command = command
        self.forwarded = forwarded
        self.buffer = b""
        self.starting = False
        self.child: int | None = None
        self.ended: int | None = None
        self.exit: int | None = None
        self.worker_status: int | None = None
        os.set_blocking(pipe, False)

    def watch(self) -> int:
        waited = (*self.forwarded, signal.SIGCHLD)
        t0 = time.monotonic()
        ended_at: float | None = None
        while True:
            info = signal.sigtimedwait(waited, 0.05)
            if info is not None and info.si_signo != signal.SIGCHLD:
                self._forward(info)
            self._drain()
            self._reap()
            if self.worker_status is not None:
                break
            now = time.monotonic()
            if self.ended is not None:
                ended_at = ended_at or now
                if now - ended_at > AFTER_END_S:
                    _warn(
                        f"the measurement did not finish within {AFTER_END_S:g} s of the "
                        "command's end (a stuck driver?); its reports may be missing"
                    )
                    return self._stop_worker(self.ended)
            elif not self.starting and now - t0 > BEFORE_START_S:
                _warn(
                    f"the measurement did not start within {BEFORE_START_S:g} s (a stuck "
                    "driver?): the command runs unmeasured"
                )
                self._stop_worker(0)
                return self._run_unmeasured()
        self._drain()
        return self._outcome()

    def _forward(self, info: signal.struct_siginfo) -> None:
        # A key typed at the terminal reaches the whole process group already.
        if info.si_signo in (signal.SIGINT, signal.SIGWINCH) and info.si_code == _SI_KERNEL:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.worker, info.si_signo)

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.pipe, 4096)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                word, _, value = line.decode(errors="replace").partition(" ")
                if word == "starting":
                    self.starting = True
                elif word == "started" and value.isdigit():
                    self.child = int(value)
                elif word == "ended":
                    self.ended = int(value)
                elif word == "exit":
                    self.exit = int(value)

    def _reap(self) -> None:
        """Reaps the worker once it has gone, and any orphan that came to this subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.worker:
                self.worker_status = status
            elif pid == self.child and self.ended is None:
                self.ended = os.waitstatus_to_exitcode(status)

    def _outcome(self) -> int:
        status = self.worker_status or 0
        if os.WIFEXITED(status) and self.exit is not None:
            return os.waitstatus_to_exitcode(status)
        how = _how(status)
        if self.ended is not None:
            _warn(f"the measurement {how} after the command ended; its reports may be missing")
            return self._code(self.ended)
        if self.child is not None:
            _warn(f"the measurement {how} while the command ran; the command goes on unmeasured")
            return self._code(self._wait_orphan(self.child))
        if self.starting:
            _warn(f"the measurement {how} as the command started; its exit code is unknown")
            return 1
        _warn(f"the measurement {how} before the command started: it runs unmeasured")
        return self._run_unmeasured()

    def _wait_orphan(self, pid: int) -> int:
        """The exit code of the command, reparented to this process when its worker died."""
        waited = (*self.forwarded, signal.SIGCHLD)
        while True:
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return 1  # reaped by someone else: nothing to tell
            if got == pid:
                return os.waitstatus_to_exitcode(status)
            info = signal.sigtimedwait(waited, 0.05)
            if info is not None and info.si_signo != signal.SIGCHLD:
                if info.si_signo in (signal.SIGINT, signal.SIGWINCH) and (
                    info.si_code == _SI_KERNEL
                ):
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, info.si_signo)

    def _stop_worker(self, code: int) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.worker, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.worker, 0)
        return self._code(code)

    def _run_unmeasured(self) -> int:
        from carbonfast.cli.run_command import run_forwarding_signals

        try:
            return self._code(run_forwarding_signals(self.command, self.mask))
        except Exception as e:  # CannotStart: the shell's code for why
            _say(f"carbonfast: {e}")
            return int(getattr(e, "code", 127))

    @staticmethod
    def _code(returncode: int) -> int:
        return returncode if returncode >= 0 else 128 - returncode


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"process was killed by {signal.Signals(sig).name}"
        return f"process was killed by signal {sig}"
    return f"process exited with {os.waitstatus_to_exitcode(status)} unexpectedly"


def _subreaper() -> None:
    """Makes this process the reaper of its orphaned descendants (Linux), so that a command
    whose worker died is still this process's to wait for."""
    from carbonfast import _native

    with contextlib.suppress(OSError):  # an old kernel: orphans go to init, as before
        _native.become_subreaper()


def _warn(message: str) -> None:
    _say(f"carbonfast: warning: {message}")


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)
