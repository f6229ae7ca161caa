"""The `carbonfast` command: `info`, `run`, `bench`, `history`, `report` and `serve`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shlex
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from carbonfast.report.record import Record

# A SIGINT typed at the terminal reaches the whole foreground process group, the child
# included; the kernel marks such signals SI_KERNEL. Only signals sent to carbonfast alone
# (kill, a job scheduler) need forwarding.
_SI_KERNEL = 0x80
_FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGWINCH,
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 2
    from carbonfast.config import arguments_named_as_options

    _show_warnings_as_messages()
    try:
        with arguments_named_as_options():  # reports name settings as the options given
            return int(args.handler(args))
    except (ValueError, OSError) as e:  # bad input, or a sensor asked for and not there
        if isinstance(e, BrokenPipeError):
            return _broken_pipe()
        from carbonfast.report.console import printable_lines

        with contextlib.suppress(OSError, ValueError):
            print(printable_lines(f"carbonfast: {e}"), file=sys.stderr)
        return 2


def _show_warnings_as_messages() -> None:
    """carbonfast's own warnings read as the command's other messages, not as Python's."""
    import warnings

    from carbonfast.config import UntrustedConfigWarning

    shown = warnings.showwarning

    def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        if issubclass(category, UntrustedConfigWarning):
            _warn(str(message))
        else:
            shown(message, category, *rest, **kw)

    warnings.showwarning = show


def _broken_pipe() -> int:
    """The reader went away (`carbonfast history | head -1`): stop quietly, as `cat` does."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


# The --help sections of the settings' options.
_GROUPS = {
    "hardware": ("hardware", "where the counters are, and which to read"),
    "estimates": (
        "estimates",
        "where no counter is readable, energy is estimated from a power model",
    ),
    "distributed": (
        "distributed jobs",
        "under torchrun, mpirun or srun: one rank per host measures the host, each rank its "
        "own GPUs",
    ),
    "carbon": (
        "carbon",
        "where the energy is drawn: an option beats the environment and config files, then the "
        "most specific place wins (default: the world average)",
    ),
}


def _add_settings(p: argparse.ArgumentParser, default: Any = None) -> None:
    """An option for every setting of the table (carbonfast.config.SETTINGS) that has one,
    named after it (`cpu_tdp_w`: --cpu-tdp-w), its environment variable in its help. Values are
    validated where every layer's are, in config.resolve."""
    from carbonfast.config import SETTINGS

    groups = {name: p.add_argument_group(title, about) for name, (title, about) in _GROUPS.items()}
    for name, setting in SETTINGS.items():
        if setting.group is None:
            continue
        option = "--" + name.replace("_", "-")
        helped = f"{setting.help} [{setting.env}]"
        group = groups[setting.group]
        if setting.is_flag:
            group.add_argument(
                option,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=helped,
            )
        else:
            group.add_argument(
                option,
                dest=name,
                metavar=setting.metavar,
                choices=setting.choices,
                default=default,
                help=helped,
            )


def _parser() -> argparse.ArgumentParser:
    from carbonfast import __version__

    # No abbreviations at the top: it sees every option of the command line, and would take
    # `history --job` for an ambiguous --job-id or --job-dir.
    p = argparse.ArgumentParser(
        prog="carbonfast",
        description="Measure the energy of code from hardware counters.",
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"carbonfast {__version__}")
    _add_settings(p)
    # The settings work after the command too (`carbonfast run --country FR -- cmd`): each
    # subcommand takes them again, without defaults of its own, so as not to undo them.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_settings(common, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    pi = sub.add_parser(
        "info",
        parents=[common],
        help="which energy counters exist, which are readable, and why not",
    )
    pi.add_argument("--json", action="store_true", help="print JSON instead of text")
    pi.set_defaults(handler=_cmd_info)

    pr = sub.add_parser(
        "run",
        parents=[common],
        help="run a command and report the energy it used",
        usage="carbonfast run [--json FILE] [--csv FILE] [--html FILE] [--quiet] -- CMD [ARGS...]",
    )
    pr.add_argument("--json", metavar="FILE", type=Path, help="also write the report as JSON")
    pr.add_argument(
        "--csv", metavar="FILE", type=Path, help="append a row to a CodeCarbon-style emissions.csv"
    )
    pr.add_argument("--html", metavar="FILE", type=Path, help="write an HTML report with plots")
    pr.add_argument("--label", help="name of the run in the history (default: the command)")
    pr.add_argument(
        "--sample-hz",
        type=float,
        default=10.0,
        metavar="HZ",
        help="power trace sampling rate (default 10)",
    )
    pr.add_argument(
        "--attribute",
        metavar="SCOPE",
        help="whose share of the machine's energy to report beside it: command (default: the "
        "command and all it starts), cgroup (this job's or container's), cgroup:PATH, or off "
        "[CARBONFAST_ATTRIBUTE]",
    )
    pr.add_argument(
        "--cgroup",
        metavar="PATH",
        help="attribute to this cgroup v2 (a SLURM job's, a container's): --attribute cgroup:PATH",
    )
    pr.add_argument("--no-history", action="store_true", help="do not record the run")
    pr.add_argument("--quiet", action="store_true", help="no summary on stderr")
    pr.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    pr.set_defaults(handler=_cmd_run)

    pb = sub.add_parser(
        "bench",
        parents=[common],
        help="compare functions or statements by energy and time per call",
        usage="carbonfast bench [MOD:FUNC ...] [--stmt CODE ...] [--setup CODE] [--json FILE]",
    )
    pb.add_argument("targets", nargs="*", metavar="MOD:FUNC", help="functions to compare")
    pb.add_argument("--stmt", action="append", default=[], help="a statement to benchmark")
    pb.add_argument("--setup", default="", help="code run once first (imports, data)")
    pb.add_argument("--json", metavar="FILE", type=Path, help="write the result as JSON")
    pb.add_argument("--min-time", type=float, default=2.0, help="seconds of sampling (default 2)")
    pb.add_argument("--rounds", type=int, help="exactly this many rounds instead")
    pb.add_argument("--baseline", action="store_true", help="also report energy above idle")
    pb.add_argument("--isolate", action="store_true", help="each variant in its own process")
    pb.set_defaults(handler=_cmd_bench)

    ph = sub.add_parser(
        "history", parents=[common], help="runs and windows recorded so far, newest first"
    )
    ph.add_argument("--label", help="only those whose label contains this")
    ph.add_argument("--limit", type=int, default=20)
    ph.add_argument(
        "--kind",
        choices=("run", "bench", "window", "task"),
        help="only records of this kind (window: the label sums too)",
    )
    ph.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ph.add_argument(
        "--job",
        metavar="ID",
        help="one distributed job across its hosts and ranks, added up (with job_dir set, "
        "its parts there are merged first)",
    )
    ph.add_argument(
        "--merge",
        nargs="+",
        metavar="PATH",
        default=[],
        help="first import the job records of these job directories, JSON reports or other "
        "histories (a record already here is not added twice)",
    )
    ph.set_defaults(handler=_cmd_history)

    prep = sub.add_parser("report", parents=[common], help="show a recorded run; write it as HTML")
    prep.add_argument("run_id", type=int, metavar="RUN_ID", help="from `carbonfast history`")
    prep.add_argument("--html", metavar="FILE", type=Path, help="write an HTML report")
    prep.add_argument("--json", action="store_true", help="print the stored report as JSON")
    prep.set_defaults(handler=_cmd_report)
    for q in (ph, prep):
        q.add_argument("--history", metavar="FILE", help="history file (CARBONFAST_HISTORY)")

    ps = sub.add_parser(
        "serve",
        parents=[common],
        help="export this host's energy to Prometheus (pip install 'carbonfast[serve]')",
        description="Serve this host's energy, power and emissions at http://ADDRESS:PORT/metrics "
        "for Prometheus to scrape; the counters are read at each scrape. Estimates follow the "
        "whole machine's CPU time unless --scope says otherwise.",
    )
    ps.add_argument(
        "--address",
        default=None,
        help="address to listen on (default 127.0.0.1: this host only; 0.0.0.0 or :: for every "
        "interface)",
    )
    ps.add_argument(
        "--port", type=int, default=None, help="port to listen on (default 9464; 0: any free port)"
    )
    ps.set_defaults(handler=_cmd_serve)
    return p


def _meter_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, for Meter (the rest come from the layers)."""
    from carbonfast.config import SETTINGS

    return {
        k: getattr(args, k)
        for k, s in SETTINGS.items()
        if s.group and hasattr(args, k) and k not in _NOT_METER_SETTINGS
    }


# Settings with an option that are not the meter's: where `run` writes its report.
_NOT_METER_SETTINGS = frozenset({"job_dir"})


def _cmd_info(args: argparse.Namespace) -> int:
    from carbonfast.info import format_info, info

    data = info(**_meter_args(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_info(data))
    return 0


def _history_path(explicit: str | None = None) -> str | None:
    from carbonfast.config import resolve

    return resolve(("history",), {"history": explicit})["history"]


def _cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("run needs a command: carbonfast run [--json FILE] -- CMD [ARGS...]")
    # Signals meant for the command are blocked before any thread or process exists, so that
    # every thread (the meter's, the live line) inherits the block and none of them can be
    # killed by one: they are taken with sigwaitinfo and forwarded. They stay blocked until
    # carbonfast exits: one that comes after the command has ended (the rest of a burst) must
    # not cut the reports short.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*_FORWARDED, signal.SIGCHLD))
    from carbonfast import guard

    # A vendor library that crashes or hangs must not keep the command from running or lose
    # its exit code: the measuring happens in a worker process (see carbonfast.guard).
    return guard.run_guarded(
        lambda: _run_worker(args, command, old_mask), command, _FORWARDED, old_mask
    )


def _run_worker(args: argparse.Namespace, command: list[str], old_mask: Any) -> int:
    from carbonfast.measure import Meter

    meter_args = _meter_args(args)
    job = _run_job(meter_args)
    args.job_part = _job_part_path(args, job)
    _name_outputs_per_rank(args, job)
    _check_outputs(args)
    history = None if args.no_history else _usable_history(_history_path())
    try:
        meter = Meter(
            **meter_args,
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
    from carbonfast.report.console import LiveLine

    label = args.label or shlex.join(command)
    scope, of_command = _attribution_scope(args)
    readings: list[tuple[int, int] | None] = []
    watch: _CommandWatch | None = None
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
                readings.append(_read_scope(scope))
                watch = _CommandWatch(meter, m.start_ns) if scope is not None else None
                returncode = _run_forwarding_signals(command, mask, watch)
                readings.append(_read_scope(scope))
                if watch is not None:
                    watch.close()
            finally:
                if live is not None:
                    live.stop()
    except _CannotStart as e:
        _say(f"carbonfast: {e}")
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
        record.attributed = _attempt(
            "attributing the energy", lambda: _attributed(args, scope, m, readings, watch.shares)
        )
    trace = None
    if args.sample_hz and failure is None:
        trace = _attempt("the power trace", lambda: _trace_dict(meter, m))
    if trace and record.attributed is not None:
        from carbonfast.attribution import with_dynamic

        attributed, length = record.attributed, record.duration_s
        _attempt("the idle baseline", lambda: with_dynamic(attributed, trace, length))
    if history:
        record.id = _attempt(history, lambda: _record_run(history, record, trace))
    if args.json:
        text = json.dumps(record.to_dict(), indent=2)
        _attempt(args.json, lambda: _write_atomically(args.json, text))
    if args.job_part:
        part = json.dumps(record.to_dict(), indent=2)
        _attempt(args.job_part, lambda: _write_atomically(args.job_part, part))
    if args.csv:
        _attempt(args.csv, lambda: _append_csv(args, record, cpu_seconds))
    if args.html:
        from carbonfast.report import html

        _attempt(args.html, lambda: html.write(args.html, record, trace))
    if not args.quiet:
        from carbonfast.report.console import format_summary

        _attempt("the summary", lambda: _say(format_summary(record)))
        if record.id is not None:
            _say(f"  saved as run {record.id} in {history}")
    return exit_code


def _attribution_scope(args: argparse.Namespace) -> tuple[Any, bool]:
    """The scope whose share of the energy the run reports (None: off), and whether it is the
    command's: by default the command and all it starts (the children this process reaps), or
    a cgroup. One that cannot be opened is a warning, and the run goes on without it."""
    from carbonfast.attribution import open_scope
    from carbonfast.config import resolve

    given = f"cgroup:{args.cgroup}" if args.cgroup else args.attribute
    s = resolve(("attribute", "proc_root", "cgroup_root"), {"attribute": given})
    chosen = s["attribute"] or "command"
    if chosen == "off":
        return None, False
    try:
        scope = open_scope(
            "children" if chosen == "command" else chosen, s["proc_root"], s["cgroup_root"]
        )
    except (OSError, ValueError) as e:
        _warn(f"the command's share of the energy cannot be attributed ({e})")
        return None, False
    if chosen == "command":
        scope.label = "the command's process tree"
    return scope, chosen == "command"


def _read_scope(scope: Any) -> tuple[int, int] | None:
    if scope is None:
        return None
    try:
        start, busy = scope.read()
        return start, busy
    except OSError as e:
        _warn(f"the command's share of the energy cannot be attributed ({e})")
        return None


def _attributed(
    args: argparse.Namespace, scope: Any, m: Any, readings: list[Any], gpus: Any
) -> Any:
    from carbonfast.attribution import attribute
    from carbonfast.config import resolve

    # The CPU estimate (no counter) already follows the process tree's own CPU time.
    follows = resolve(("scope",), {"scope": args.scope})["scope"] == "process"
    return attribute(m, scope, readings[0], readings[1], gpus, estimate_follows_scope=follows)


class _CommandWatch:
    """The command's pid, and its processes for its share of each GPU: its process tree is
    looked at while it runs (twice a second), and the GPUs' processes since the window
    opened are matched against every pid it had."""

    PERIOD_S = 0.5

    def __init__(self, meter: Any, since_ns: int) -> None:
        self.meter = meter
        self.since_ns = since_ns
        self.gpus = any(d.kind == "gpu" for d in meter.domains)
        self.pid: int | None = None
        self.pids: set[int] = set()
        self.shares: dict[str, tuple[float, float, float, str]] = {}
        if self.gpus:
            meter.native.gpu_shares([], since_ns)  # a first look, for drivers that need two

    def tick(self, pid: int) -> None:
        self.pid = pid
        if self.gpus:
            from carbonfast.attribution import process_tree

            self.pids |= process_tree(pid)

    def close(self) -> None:
        if self.gpus:
            from carbonfast.attribution import gpu_shares

            found = self.meter.native.gpu_shares(sorted(self.pids), self.since_ns)
            self.shares = gpu_shares(self.meter.domains, found)


class _CannotStart(Exception):
    """The command could not be started; `code` is the shell's code for why."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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
        _warn(f"the measurement failed during the run ({why}); its energy is unknown")
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


def _run_job(meter_args: dict[str, Any]) -> Any:
    """This run's place in a distributed job (None outside one), from the launcher's
    environment alone: MPI and torch.distributed belong to the command, and carbonfast never
    initialises them in its own process. The distributed settings are taken out of
    `meter_args`."""
    from carbonfast.config import DISTRIBUTED_KEYS, resolve
    from carbonfast.distributed import join

    given = {k: meter_args.pop(k, None) for k in DISTRIBUTED_KEYS}
    if isinstance(given["gpus"], (tuple, list)):
        given["gpus"] = ",".join(map(str, given["gpus"]))
    s = resolve(DISTRIBUTED_KEYS, given)
    return join(
        s["distributed"],
        host=s["host_id"],
        job_id=s["job_id"],
        gpus=s["gpus"],
        timeout_s=s["distributed_timeout_s"],
        engines=False,
    )


def _job_part_path(args: argparse.Namespace, job: Any) -> Path | None:
    """Where this rank writes its report in the shared job directory (job_dir), if one is
    set; the job's directory in it is made before the command starts."""
    from carbonfast.config import resolve

    job_dir = resolve(("job_dir",), {"job_dir": getattr(args, "job_dir", None)})["job_dir"]
    if job_dir is None:
        return None
    if job is None:
        _warn(f"job_dir {job_dir} is set, but this is not a rank of a job: nothing goes there")
        return None
    from carbonfast.report.job import part_path

    path = part_path(job_dir, job.job_id, job.host, job.rank)
    if not Path(job_dir).is_dir():
        raise ValueError(f"job_dir {job_dir}: no such directory (it is shared by every rank)")
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise ValueError(f"job_dir {job_dir}: cannot make {path.parent}: {e.strerror}") from None
    return path


def _name_outputs_per_rank(args: argparse.Namespace, job: Any) -> None:
    """In a job, every rank runs this same command line: {rank}, {host} and {job_id} in the
    --json and --html paths are replaced, and a path without {rank} gets `.rankN` before its
    suffix, so that no rank's report replaces another's. The CSV is shared: its rows are
    appended under a lock."""
    if job is None:
        return
    for flag in ("json", "html"):
        path = getattr(args, flag)
        if path is None:
            continue
        text = str(path)
        named = "{rank}" in text
        for key, value in (("{rank}", job.rank), ("{host}", job.host), ("{job_id}", job.job_id)):
            text = text.replace(key, str(value))
        new = Path(text)
        if not named and job.world_size > 1:
            new = new.with_name(f"{new.stem}.rank{job.rank}{new.suffix}")
        setattr(args, flag, new)


def _attempt(what: str | os.PathLike[str], step: Callable[[], Any]) -> Any:
    """Runs one step after the command: a failure becomes a warning naming `what`."""
    try:
        return step()
    except Exception as e:
        _warn(f"{what}: {e}")
        return None


def _warn(message: str) -> None:
    from carbonfast.report.console import printable

    # stderr may be closed or a broken pipe: a warning must not end the run either.
    with contextlib.suppress(OSError, ValueError):
        print(f"carbonfast: warning: {printable(message)}", file=sys.stderr, flush=True)


def _say(text: str) -> None:
    from carbonfast.report.console import printable_lines

    with contextlib.suppress(OSError, ValueError):
        print(printable_lines(text), file=sys.stderr, flush=True)


def _append_csv(args: argparse.Namespace, record: Record, cpu_seconds: float) -> None:
    from carbonfast.report import emissions_csv

    row = emissions_csv.row(record, cpu_seconds=cpu_seconds)
    emissions_csv.append(args.csv, row)


def _check_outputs(args: argparse.Namespace) -> None:
    """Before the command starts: every output can be written where it was asked for. A
    file is made (then removed) where each will be written, as it will be; an existing CSV,
    which a run appends to, is only opened for appending."""
    from carbonfast.report.files import check_target, probe

    for flag, path in (("--json", args.json), ("--csv", args.csv), ("--html", args.html)):
        if path is None:
            continue
        target = Path(path)
        parent = target.parent
        if target.is_dir() and not target.is_symlink():
            raise ValueError(f"{flag} {path}: is a directory; name a file in it")
        try:
            check_target(target)
        except ValueError as e:
            raise ValueError(f"{flag} {e}") from None
        if not parent.is_dir():
            raise ValueError(f"{flag} {path}: the directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: the directory {parent} is not writable")
        try:
            probe(target, append=flag == "--csv")
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ValueError(f"{flag} {path}: cannot be written there ({why})") from None
    if args.html:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise ValueError(
                "--html needs matplotlib for its plots: pip install 'carbonfast[report]'"
            )


# How long `run` waits for a history another process holds: before the command, a glance
# (the command is not kept waiting); after it, a while, then a warning naming the file.
_HISTORY_CHECK_S = 0.4
_HISTORY_WAIT_S = 10.0


def _locked(e: BaseException) -> bool:
    import sqlite3

    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def _usable_history(path: str | None) -> str | None:
    """The history, if it can be written: otherwise a warning, and the run goes on without.
    One held by another process is not waited for: the run is recorded after the command if
    the history is free by then."""
    if path is None:
        return None
    from carbonfast.report.history import History

    history = None
    try:
        history = History(path, timeout=_HISTORY_CHECK_S, say=_warn)
        history.check()
    except Exception as e:
        if _locked(e):
            _warn(
                f"the history {path} is locked by another process; the command runs now, and "
                f"is recorded after it if the history is free within {_HISTORY_WAIT_S:g} s"
            )
            return path
        _warn(f"the history {path} cannot be used ({e}); this run is not recorded")
        return None
    finally:
        if history is not None:
            history.close()
    return path


def _record_run(path: str, record: Record, trace: dict[str, Any] | None) -> int:
    """Adds the run to the history, waiting at most about _HISTORY_WAIT_S for another
    process's lock."""
    from carbonfast.report.history import History

    history = None
    try:
        history = History(path, timeout=_HISTORY_WAIT_S, say=_warn)
        return history.add(record, trace)
    except Exception as e:
        if _locked(e):
            raise ValueError(
                f"the history {path} is still locked by another process after "
                f"{_HISTORY_WAIT_S:g} s; this run is not recorded there"
            ) from None
        raise
    finally:
        if history is not None:
            history.close()


# A stored trace keeps at most this many points: enough for a plot, small in the history.
_TRACE_POINTS = 1000


def _trace_dict(meter: Any, m: Any) -> dict[str, Any] | None:
    """The samples inside the window, downsampled, as plain lists (no numpy needed).

    A counter that refreshes in steps is traced between its timestamped refreshes (the core
    interpolates it); where that is not known yet (before the first refresh it placed, after
    the last one seen) a sample is unknown (NaN). Such samples at either end are left out, and a
    power that nothing measured inside is None, never 0."""
    from array import array

    data, rows, width = meter.native.trace()
    table = array("d")
    table.frombytes(data[: rows * width * 8])
    t0, t1 = m.start_ns * 1e-9, (m.end_ns or m.start_ns) * 1e-9
    keep = [r for r in range(rows) if t0 <= table[r * width] <= t1]

    def known(r: int) -> bool:
        return all(v == v for v in table[r * width + 1 : (r + 1) * width])  # NaN != NaN

    first = next((k for k, r in enumerate(keep) if known(r)), len(keep))
    last = next((k for k in range(len(keep) - 1, -1, -1) if known(keep[k])), -1)
    keep = keep[first : last + 1]
    if len(keep) < 2:
        return None
    keep = keep[:: max(1, len(keep) // _TRACE_POINTS)]
    t = [table[r * width] for r in keep]
    power: dict[str, list[float | None]] = {}
    for col, name in enumerate(meter.domain_names, start=1):
        e = [table[r * width + col] for r in keep]
        p = [(e[k] - e[k - 1]) / (t[k] - t[k - 1]) for k in range(1, len(e))]
        first_point: list[float | None] = [None]  # no power before the first sample
        power[name] = first_point + [w if w == w else None for w in p]
    return {"t_s": t, "power_w": power}


def _cmd_bench(args: argparse.Namespace) -> int:
    from carbonfast.bench import bench
    from carbonfast.measure import Meter

    namespace: dict[str, Any] = {}
    sys.path.insert(0, os.getcwd())
    exec(_compiled(args.setup, "--setup", args.setup), namespace)
    variants: dict[str, Any] = {}
    for target in args.targets:
        variants[target] = _resolve_target(target)
    for i, stmt in enumerate(args.stmt, 1):
        source = "def _bench_stmt():\n" + "".join(f"    {line}\n" for line in stmt.splitlines())
        exec(_compiled(source, "--stmt", stmt), namespace)
        variants[stmt if len(stmt) <= 40 else f"stmt {i}"] = namespace.pop("_bench_stmt")
    if not variants:
        raise ValueError("bench needs MOD:FUNC targets or --stmt statements")
    meter = Meter(**_meter_args(args), history="off")
    result = bench(
        variants,
        min_time=args.min_time,
        rounds=args.rounds,
        baseline=args.baseline,
        isolate=args.isolate,
        meter=meter,
    )
    from carbonfast.report.console import printable_lines

    print(printable_lines(result))
    if result.id is not None:
        print(f"saved as run {result.id} in the history")
    if args.json:
        _write_atomically(args.json, result.to_json() + "\n")
    return 0


def _compiled(source: str, flag: str, given: str) -> Any:
    try:
        return compile(source, f"<{flag}>", "exec")
    except SyntaxError as e:
        raise ValueError(f"{flag} {given!r} is not valid Python: {e.msg}") from None


def _resolve_target(target: str) -> Any:
    import importlib

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not MOD:FUNC (e.g. mypkg.parsers:parse_fast)")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} for {target!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no {attr!r} (in {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable")
    return obj


def _cmd_history(args: argparse.Namespace) -> int:
    from carbonfast.report.history import History

    path = _history_path(args.history)
    if args.merge or args.job:
        _merge_job_records(args, path)
    if not path or not Path(path).exists():
        print(f"carbonfast: no history yet at {path}", file=sys.stderr)
        if args.json:
            print("[]")
        return 0
    history = History(path, read_only=True, say=_warn)
    if args.job:
        return _show_job(args, history)
    rows = history.list(label=args.label, limit=args.limit, kind=args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':>5}  {'started (UTC)':<19}  {'kind':<7} {'s':>9} {'J':>11} {'g CO2e':>10}  label")
    from carbonfast.report.console import printable

    for r in rows:
        energy = _number(r["energy_j"], ".4g", "unknown")
        if r["estimated"]:
            energy += "~"
        grams = _number(r["emissions_kg"], ".4g", scale=1e3)
        label = r["label"] or ""
        if r.get("count") is not None:
            label = f"{label or '(no label)'} x{r['count']}"
        if r.get("world_size") is not None:
            part = "whole job" if r.get("whole_job") else f"rank {r['rank']} on {r['host']}"
            label = f"{label}  [job {r['job_id']}: {part}]"
        print(
            printable(
                f"{r['id']:>5}  {_text(r['started_at'])[:19]:<19}  {_text(r['kind']):<7} "
                f"{_number(r['duration_s'], '.3f'):>9} {energy:>11} {grams:>10}  {label}"
            )
        )
    return 0


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any, spec: str, absent: str = "", scale: float = 1.0) -> str:
    """A stored number in a table cell; what is not a number (an edited file) shown as is."""
    if value is None:
        return absent
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value * scale, spec)
    return str(value)


def _merge_job_records(args: argparse.Namespace, path: str | None) -> None:
    """Imports the records of --merge PATH... and, for --job ID, of the job's directory in
    job_dir, into the history."""
    from carbonfast.config import resolve
    from carbonfast.report.job import part_path, read_sources

    sources = list(args.merge)
    job_dir = resolve(("job_dir",), {"job_dir": getattr(args, "job_dir", None)})["job_dir"]
    if args.job and job_dir:
        directory = part_path(job_dir, args.job, "_", 0).parent
        if directory.is_dir():
            sources.append(str(directory))
    if not sources:
        return
    if not path:
        raise ValueError("--merge needs a history to merge into: set --history FILE")
    from carbonfast.report.history import History

    records = read_sources(sources, args.job, say=_warn)
    added = History(path, say=_warn).import_records(records)
    print(f"carbonfast: {added} record(s) merged into {path}", file=sys.stderr)


def _show_job(args: argparse.Namespace, history: Any) -> int:
    from carbonfast.report.job import format_job, summarize

    records = history.job_records(args.job)
    groups = summarize(records)
    if args.json:
        out = {
            "job_id": args.job,
            "groups": [g.to_dict() for g in groups],
            "records": [r.to_dict() for r in records],
        }
        print(json.dumps(out, indent=2))
        return 0
    if not records:
        print(f"carbonfast: no record of job {args.job} in {history.path}", file=sys.stderr)
        return 0
    from carbonfast.report.console import printable

    print(format_job(args.job, records, groups))
    print(
        f"{'id':>5}  {'started (UTC)':<19}  {'kind':<7} {'host':<12} {'rank':>4} {'J':>11}  label"
    )
    for r in records:
        energy = "unknown" if r.energy_j is None else f"{r.energy_j:.4g}"
        if r.estimated:
            energy += "~"
        whole = " (whole job)" if r.hosts is not None else ""
        print(
            printable(
                f"{r.id:>5}  {r.started_at[:19]:<19}  {r.kind:<7} {r.host or '?':<12} "
                f"{'' if r.rank is None else r.rank:>4} {energy:>11}  {r.label or ''}{whole}"
            )
        )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from carbonfast.report.console import format_summary
    from carbonfast.report.history import History

    path = _history_path(args.history)
    if not path or not Path(path).exists():
        raise ValueError(f"no history at {path}; run `carbonfast run` first")
    if not 1 <= args.run_id < 2**63:
        raise ValueError(f"no record {args.run_id} in {path}; `carbonfast history` lists them")
    record, trace = History(path, read_only=True, say=_warn).get(args.run_id)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(format_summary(record))
    if args.html:
        from carbonfast.report import html

        html.write(args.html, record, trace)
        print(f"carbonfast: wrote {args.html}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from carbonfast import serve
    except ImportError as e:
        raise ValueError(str(e)) from None
    address = serve.DEFAULT_ADDRESS if args.address is None else args.address
    port = serve.DEFAULT_PORT if args.port is None else args.port
    meter = serve.host_meter(**_meter_args(args))
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        exporter = serve.start(meter, address, port)
        try:
            g_per_kwh, source, pue = exporter.collector.intensity
            names = ", ".join(meter.domain_names) or "none"
            _say(f"carbonfast: serving {len(meter.domains)} domains ({names}) at {exporter.url}")
            labels = " ".join(f"{k}={v}" for k, v in exporter.collector.constant_labels.items())
            _say(f"  labels {labels}; emissions at {g_per_kwh:g} g/kWh x PUE {pue:g} ({source})")
            if not serve.is_loopback(address):
                _say(
                    f"  listening beyond this host: whoever reaches port {exporter.port} reads "
                    "its power; limit that with a firewall"
                )
            stop.wait()
        finally:
            exporter.close()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    _say("carbonfast: stopped serving")
    return 0


def _run_forwarding_signals(command: list[str], mask: Any, watch: Any = None) -> int:
    """Runs `command` to completion; returns its return code (negative: killed by signal).
    The signals in _FORWARDED must be blocked in this thread: they are taken here and passed
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
        raise _CannotStart(f"command not found: {command[0]}", 127) from None
    except PermissionError:
        raise _CannotStart(f"permission denied: {command[0]}", 126) from None
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            raise _CannotStart(
                f"cannot execute {command[0]}: not a program, and no #! line naming an "
                "interpreter; add one, or run it with its interpreter",
                126,
            ) from None
        raise _CannotStart(f"cannot execute {command[0]}: {e.strerror}", 126) from None
    guard.tell(f"started {pid}")
    if watch is not None:
        watch.tick(pid)
    waited = (*_FORWARDED, signal.SIGCHLD)
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


def _write_atomically(path: str | os.PathLike[str], text: str) -> None:
    from carbonfast.report.files import write_atomically

    write_atomically(path, text + "\n")


if __name__ == "__main__":
    sys.exit(main())
