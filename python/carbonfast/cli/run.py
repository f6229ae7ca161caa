"""`carbonfast run`: runs a command and reports the energy it used.

The command's exit code comes first: once it has started, whatever fails in the measuring or
the reports is a warning."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from carbonfast.cli.messages import attempt, say, warn, write_atomically
from carbonfast.cli.options import history_path, meter_args
from carbonfast.cli.run_command import FORWARDED, CannotStart, run_forwarding_signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.cli.run_attribution import CommandWatch
    from carbonfast.report.record import Record

USAGE = "carbonfast run [--json FILE] [--csv FILE] [--html FILE] [--quiet | -v] -- CMD [ARGS...]"


def add_parser(sub: Any, common: argparse.ArgumentParser, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("run", parents=[common], help=summary, usage=USAGE)
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the report as JSON")
    p.add_argument(
        "--csv",
        metavar="FILE",
        type=Path,
        help="append a row to a CodeCarbon-style emissions.csv",
    )
    p.add_argument("--html", metavar="FILE", type=Path, help="write an HTML report with plots")
    p.add_argument("--label", help="name of the run in the history (default: the command)")
    p.add_argument(
        "--sample-hz",
        type=float,
        default=10.0,
        metavar="HZ",
        help="power trace sampling rate (default 10)",
    )
    p.add_argument(
        "--attribute",
        metavar="SCOPE",
        help="whose share of the energy to report too: command (default: it and all it "
        "starts), cgroup, cgroup:PATH or off [CARBONFAST_ATTRIBUTE]",
    )
    p.add_argument(
        "--cgroup",
        metavar="PATH",
        help="attribute to this cgroup v2 (a SLURM job's, a container's): --attribute cgroup:PATH",
    )
    p.add_argument(
        "--codecarbon",
        action="store_true",
        help="the command's Python imports carbonfast's CodeCarbon drop-in as `codecarbon` "
        "(for code that imports codecarbon itself, such as transformers' "
        'report_to="codecarbon")',
    )
    p.add_argument("--no-history", action="store_true", help="do not record the run")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="every advice and note in the summary"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("run needs a command: carbonfast run [--json FILE] -- CMD [ARGS...]")
    # Signals meant for the command are blocked before any thread or process exists, so that
    # every thread (the meter's, the live line) inherits the block and none of them can be
    # killed by one: they are taken with sigwaitinfo and forwarded. They stay blocked until
    # carbonfast exits: one that comes after the command has ended (the rest of a burst) must
    # not cut the reports short.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD))
    from carbonfast import guard

    # Set before the worker is forked: the command gets it whichever process starts it.
    drop_in: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if args.codecarbon:
        from carbonfast.cli.run_codecarbon import codecarbon_drop_in

        drop_in = codecarbon_drop_in()
    with drop_in:
        # A vendor library that crashes or hangs must not keep the command from running or
        # lose its exit code: the measuring happens in a worker process (see carbonfast.guard).
        return guard.run_guarded(
            lambda: _run_worker(args, command, old_mask), command, FORWARDED, old_mask
        )


def _run_worker(args: argparse.Namespace, command: list[str], old_mask: Any) -> int:
    # Loaded here, in the worker: the guard, which only waits, needs none of it.
    from carbonfast.cli.run_job import job_part_path, join_job, name_outputs_per_rank
    from carbonfast.cli.run_outputs import check_outputs, usable_history
    from carbonfast.measure import Meter

    settings = meter_args(args)
    job = join_job(settings)
    args.job_part = job_part_path(args, job)
    name_outputs_per_rank(args, job)
    check_outputs(args)
    history = None if args.no_history else usable_history(history_path())
    try:
        meter = Meter(
            **settings,
            distributed=job or False,
            sample_hz=args.sample_hz or None,
            history="off",
        )
        return _run_measured(args, command, meter, history, old_mask)
    except OSError as e:
        raise ValueError(str(e)) from None


def _run_measured(
    args: argparse.Namespace, command: list[str], meter: Any, history: str | None, mask: Any
) -> int:
    """Runs the command in a window of `meter`. Once the command has started, whatever fails
    is a warning, and the command's exit code is returned."""
    import shlex
    from datetime import datetime, timezone

    from carbonfast.cli.run_attribution import (
        CommandWatch,
        attribute_to_scope,
        attribution_scope,
        read_scope,
    )
    from carbonfast.cli.run_outputs import append_csv, record_run, trace_dict
    from carbonfast.report.console import LiveLine

    label = args.label or shlex.join(command)
    scope, of_command = attribution_scope(args)
    readings: list[tuple[int, int] | None] = []
    watch: CommandWatch | None = None
    before = os.times()
    # The command's time and start, which a run keeps even where its measurement fails.
    started_at = datetime.now(timezone.utc).isoformat()
    t0 = time.monotonic()
    returncode: int | None = None
    failure: Exception | None = None
    m = None
    try:
        with meter.measure(label) as m:
            live = None
            if not args.quiet and sys.stderr is not None and sys.stderr.isatty():
                live = LiveLine(m)
                live.start()
            try:
                readings.append(read_scope(scope))
                watch = CommandWatch(meter, m.start_ns) if scope is not None else None
                returncode = run_forwarding_signals(command, mask, watch)
                readings.append(read_scope(scope))
                if watch is not None:
                    watch.close()
            finally:
                if live is not None:
                    live.stop()
    except CannotStart as e:
        say(f"carbonfast: {e}")
        return e.code
    except Exception as e:  # the meter failed, not the command: its code still counts
        if returncode is None:
            raise
        failure = e
    except BaseException as e:  # KeyboardInterrupt and the like, once the command has run
        if returncode is not None:
            e.started = True  # type: ignore[attr-defined]
        raise
    after = os.times()
    ran = (started_at, time.monotonic() - t0)
    exit_code = returncode if returncode >= 0 else 128 - returncode
    cpu_seconds = sum(after[i] - before[i] for i in range(4))  # self and children
    record = _safe_report(m, command, exit_code, label, cpu_seconds, failure, ran)
    if scope is not None and watch is not None and failure is None and None not in readings:
        if of_command and watch.pid is not None:
            scope.label = f"process tree of {watch.pid}"
        record.attributed = attempt(
            "attributing the energy",
            lambda: attribute_to_scope(args, scope, m, readings, watch.shares),
        )
    trace = None
    if args.sample_hz and failure is None:
        trace = attempt("the power trace", lambda: trace_dict(meter, m))
    if trace and record.attributed is not None:
        from carbonfast.attribution import with_dynamic

        attributed, length = record.attributed, record.duration_s
        attempt("the idle baseline", lambda: with_dynamic(attributed, trace, length))
    if history:
        record.id = attempt(history, lambda: record_run(history, record, trace))
    if args.json:
        text = json.dumps(record.to_dict(), indent=2)
        attempt(args.json, lambda: write_atomically(args.json, text))
    if args.job_part:
        part = json.dumps(record.to_dict(), indent=2)
        attempt(args.job_part, lambda: write_atomically(args.job_part, part))
    if args.csv:
        attempt(args.csv, lambda: append_csv(args, record, cpu_seconds))
    if args.html:
        from carbonfast.report import html

        attempt(args.html, lambda: html.write(args.html, record, trace))
    if not args.quiet:
        from carbonfast.report.console import format_summary

        attempt("the summary", lambda: say(format_summary(record, verbose=args.verbose)))
        if record.id is not None:
            say(f"  saved as run {record.id} in {history}")
    return exit_code


def _safe_report(
    m: Any,
    command: list[str],
    exit_code: int,
    label: str,
    cpu_seconds: float,
    failure: Exception | None,
    ran: tuple[str, float],
) -> Record:
    """The run's record; where the measurement itself failed, one that says so, with the
    energy unknown (never 0) and the command's start and duration, `ran`."""
    from carbonfast.report.record import Record

    record: Record | None = None
    if failure is None and m is not None:
        try:
            record = Record.from_measurement(m, "run")
            from carbonfast.carbon.advice import advise

            record.advice = [
                {"kind": a.kind, "message": a.message, "figures": a.figures}
                for a in advise(m, cpu_seconds=cpu_seconds)
            ]
        except Exception as e:
            failure = e
    if record is None:
        why = f"{type(failure).__name__}: {failure}"
        warn(f"the measurement failed during the run ({why}); its energy is unknown")
        record = Record.failed_run(command, exit_code, why, *ran)
    record.command = command
    record.exit_code = exit_code
    record.label = label
    record.cpu_seconds = cpu_seconds
    job = getattr(getattr(m, "meter", None), "job", None)
    if job is not None:
        for key, value in job.tags().items():
            setattr(record, key, value)
        if not job.gathers:
            from carbonfast.measure import _part_note

            note = _part_note(job, closed=True)
            if note not in record.notes:
                record.notes = [*record.notes, *job.notes, note]
    return record
