"""The `carbonfast` command: `info` and `run`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# A SIGINT typed at the terminal reaches the whole foreground process group, the child
# included; the kernel marks such signals SI_KERNEL. Only signals sent to carbonfast alone
# (kill, a job scheduler) need forwarding.
_SI_KERNEL = 0x80
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except ValueError as e:
        print(f"carbonfast: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from carbonfast import __version__

    p = argparse.ArgumentParser(
        prog="carbonfast",
        description="Measure the energy of code from hardware counters.",
    )
    p.add_argument("--version", action="version", version=f"carbonfast {__version__}")
    p.add_argument(
        "--powercap-root",
        metavar="DIR",
        help="powercap directory (default: $CARBONFAST_POWERCAP_ROOT or /sys/class/powercap)",
    )
    p.add_argument(
        "--source",
        choices=("auto", "powercap", "msr", "perf"),
        help="RAPL path to read (default: auto, the best available)",
    )
    p.add_argument(
        "--no-gpu", dest="gpu", action="store_false", default=None, help="do not measure GPUs"
    )
    est = p.add_argument_group(
        "estimates", "where no counter is readable, energy is estimated from a power model"
    )
    est.add_argument(
        "--no-estimate",
        dest="estimate",
        action="store_false",
        default=None,
        help="never estimate: report unreadable domains as unknown",
    )
    est.add_argument(
        "--scope",
        choices=("process", "container", "machine"),
        help="CPU time the estimate follows (default: process, with its children)",
    )
    est.add_argument("--cpu-tdp-w", type=float, metavar="W", help="CPU TDP per socket")
    est.add_argument("--cpu-threads", type=int, metavar="N", help="logical CPUs")
    est.add_argument("--ram-gb", type=float, metavar="GB", help="installed memory")
    est.add_argument("--cpu-power-w", type=float, metavar="W", help="fixed CPU power")
    est.add_argument("--ram-power-w", type=float, metavar="W", help="fixed RAM power")
    carbon = p.add_argument_group(
        "carbon", "where the energy is drawn (most specific wins; default: the world average)"
    )
    carbon.add_argument("--country", metavar="CODE", help="ISO 3166 alpha-2 or alpha-3 code")
    carbon.add_argument("--zone", metavar="ZONE", help="Electricity Maps zone, e.g. US-CAL-CISO")
    carbon.add_argument("--cloud", metavar="P:REGION", help="cloud region, e.g. gcp:europe-west1")
    carbon.add_argument("--intensity", metavar="G", help="grid intensity, g CO2e per kWh")
    carbon.add_argument("--pue", metavar="PUE", help="data-centre power usage effectiveness")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    pi = sub.add_parser("info", help="which energy counters exist, which are readable, and why not")
    pi.add_argument("--json", action="store_true", help="print JSON instead of text")
    pi.set_defaults(handler=_cmd_info)

    pr = sub.add_parser(
        "run",
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
    pr.add_argument("--no-history", action="store_true", help="do not record the run")
    pr.add_argument("--quiet", action="store_true", help="no summary on stderr")
    pr.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    pr.set_defaults(handler=_cmd_run)

    pb = sub.add_parser(
        "bench",
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

    ph = sub.add_parser("history", help="runs and windows recorded so far, newest first")
    ph.add_argument("--label", help="only those whose label contains this")
    ph.add_argument("--limit", type=int, default=20)
    ph.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ph.set_defaults(handler=_cmd_history)

    prep = sub.add_parser("report", help="show a recorded run; write it as HTML")
    prep.add_argument("run_id", type=int, metavar="RUN_ID", help="from `carbonfast history`")
    prep.add_argument("--html", metavar="FILE", type=Path, help="write an HTML report")
    prep.add_argument("--json", action="store_true", help="print the stored report as JSON")
    prep.set_defaults(handler=_cmd_report)
    for q in (ph, prep):
        q.add_argument("--history", metavar="FILE", help="history file (CARBONFAST_HISTORY)")
    return p


def _meter_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, for Meter (the rest come from the layers)."""
    from carbonfast.config import CARBON_KEYS, ESTIMATE_KEYS

    return {k: getattr(args, k) for k in (*ESTIMATE_KEYS, *CARBON_KEYS) if hasattr(args, k)}


def _cmd_info(args: argparse.Namespace) -> int:
    from carbonfast.info import format_info, info

    data = info(args.powercap_root, **_meter_args(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_info(data))
    return 0


def _history_path(explicit: str | None = None) -> str | None:
    from carbonfast.config import resolve

    return resolve(("history",), {"history": explicit})["history"]


def _cmd_run(args: argparse.Namespace) -> int:
    from carbonfast.measure import Meter
    from carbonfast.report.console import LiveLine, format_summary

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("run needs a command: carbonfast run [--json FILE] -- CMD [ARGS...]")
    history = None if args.no_history else _history_path()
    meter = Meter(
        args.powercap_root, **_meter_args(args), sample_hz=args.sample_hz or None, history="off"
    )
    window = meter.measure(args.label or shlex.join(command))
    before = os.times()
    with window as m:
        live = None
        if not args.quiet and sys.stderr.isatty():
            live = LiveLine(m)
            live.start()
        try:
            returncode = _run_forwarding_signals(command)
        except FileNotFoundError:
            print(f"carbonfast: command not found: {command[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"carbonfast: permission denied: {command[0]}", file=sys.stderr)
            return 126
        finally:
            if live is not None:
                live.stop()
    after = os.times()
    cpu_seconds = sum(after[i] - before[i] for i in range(4))  # self and children, user + system
    exit_code = returncode if returncode >= 0 else 128 - returncode
    from carbonfast.carbon.advice import advise

    report = _run_report(m.to_dict(), command, exit_code)
    report["label"] = args.label or shlex.join(command)
    report["cpu_seconds"] = cpu_seconds
    report["advice"] = [
        {"kind": a.kind, "message": a.message, "figures": a.figures}
        for a in advise(m, cpu_seconds=cpu_seconds)
    ]
    trace = _trace_dict(meter, m) if args.sample_hz else None
    if history:
        from carbonfast.report.history import History

        report["id"] = History(history).add(report, "run", trace)
    if args.json:
        _write_atomically(args.json, json.dumps(report, indent=2) + "\n")
    if args.csv:
        from carbonfast.report import emissions_csv

        row = emissions_csv.row(
            report, cpu_seconds=cpu_seconds, tracking_mode=args.scope or "process"
        )
        emissions_csv.append(args.csv, row)
    if args.html:
        from carbonfast.report import html

        html.write(args.html, report, trace)
    if not args.quiet:
        print(format_summary(report), file=sys.stderr)
        if history:
            print(f"  saved as run {report['id']} in {history}", file=sys.stderr)
    return exit_code


# A stored trace keeps at most this many points: enough for a plot, small in the history.
_TRACE_POINTS = 1000


def _trace_dict(meter: Any, m: Any) -> dict[str, Any] | None:
    """The samples inside the window, downsampled, as plain lists (no numpy needed)."""
    from array import array

    data, rows, width = meter._native.trace()
    table = array("d")
    table.frombytes(data[: rows * width * 8])
    t0, t1 = m._start.t_ns * 1e-9, m._end.t_ns * 1e-9
    keep = [r for r in range(rows) if t0 <= table[r * width] <= t1]
    if len(keep) < 2:
        return None
    keep = keep[:: max(1, len(keep) // _TRACE_POINTS)]
    t = [table[r * width] for r in keep]
    power: dict[str, list[float | None]] = {}
    for col, name in enumerate(meter.domain_names, start=1):
        e = [table[r * width + col] for r in keep]
        power[name] = [None] + [(e[k] - e[k - 1]) / (t[k] - t[k - 1]) for k in range(1, len(e))]
    return {"t_s": t, "power_w": power}


def _cmd_bench(args: argparse.Namespace) -> int:
    from carbonfast.bench import bench
    from carbonfast.measure import Meter

    namespace: dict[str, Any] = {}
    sys.path.insert(0, os.getcwd())
    exec(compile(args.setup, "<setup>", "exec"), namespace)
    variants: dict[str, Any] = {}
    for target in args.targets:
        variants[target] = _resolve_target(target)
    for i, stmt in enumerate(args.stmt, 1):
        source = "def _bench_stmt():\n" + "".join(f"    {line}\n" for line in stmt.splitlines())
        exec(compile(source, f"<stmt {i}>", "exec"), namespace)
        variants[stmt if len(stmt) <= 40 else f"stmt {i}"] = namespace.pop("_bench_stmt")
    if not variants:
        raise ValueError("bench needs MOD:FUNC targets or --stmt statements")
    meter = Meter(args.powercap_root, **_meter_args(args), history="off")
    result = bench(
        variants,
        min_time=args.min_time,
        rounds=args.rounds,
        baseline=args.baseline,
        isolate=args.isolate,
        meter=meter,
    )
    print(result)
    if result.id is not None:
        print(f"saved as run {result.id} in the history")
    if args.json:
        _write_atomically(args.json, result.to_json() + "\n")
    return 0


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
    if not path or not Path(path).exists():
        print(f"carbonfast: no history yet at {path}", file=sys.stderr)
        if args.json:
            print("[]")
        return 0
    rows = History(path).list(label=args.label, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':>5}  {'started (UTC)':<19}  {'kind':<6} {'s':>9} {'J':>11} {'g CO2e':>10}  label")
    for r in rows:
        energy = "unknown" if r["energy_j"] is None else f"{r['energy_j']:.4g}"
        if r["estimated"]:
            energy += "~"
        grams = "" if r["emissions_kg"] is None else f"{r['emissions_kg'] * 1e3:.4g}"
        print(
            f"{r['id']:>5}  {r['started_at'][:19]:<19}  {r['kind']:<6} {r['duration_s']:>9.3f} "
            f"{energy:>11} {grams:>10}  {r['label'] or ''}"
        )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from carbonfast.report.console import format_summary
    from carbonfast.report.history import History

    path = _history_path(args.history)
    if not path or not Path(path).exists():
        raise ValueError(f"no history at {path}; run `carbonfast run` first")
    report, trace = History(path).get(args.run_id)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_summary({"command": None, "exit_code": None, **report}))
    if args.html:
        from carbonfast.report import html

        html.write(args.html, report, trace)
        print(f"carbonfast: wrote {args.html}", file=sys.stderr)
    return 0


def _run_forwarding_signals(command: list[str]) -> int:
    """Runs `command` to completion; returns its return code (negative: killed by signal)."""
    proc = subprocess.Popen(command)
    waited = (*_FORWARDED, signal.SIGCHLD)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        while proc.poll() is None:
            info = signal.sigwaitinfo(waited)
            if info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGINT and info.si_code == _SI_KERNEL:
                continue  # from the terminal: the child got it too
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(info.si_signo)
        return proc.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _run_report(measurement: dict[str, Any], command: list[str], exit_code: int) -> dict[str, Any]:
    from carbonfast import __version__

    report = {
        "command": command,
        "exit_code": exit_code,
        "started_at": measurement["started_at"],
        "duration_s": measurement["duration_s"],
        "energy_j": measurement["energy_j"],
        "energy_range_j": measurement["energy_range_j"],
        "power_w": measurement["power_w"],
        "estimated": measurement["estimated"],
        "emissions_kg": measurement["emissions_kg"],
        "emissions_range_kg": measurement["emissions_range_kg"],
        "intensity_g_per_kwh": measurement["intensity_g_per_kwh"],
        "intensity_source": measurement["intensity_source"],
        "location": measurement["location"],
        "country": measurement["country"],
        "pue": measurement["pue"],
        "domains": measurement["domains"],
        "total_domains": measurement["total_domains"],
        "notes": measurement["notes"],
        "carbonfast_version": __version__,
    }
    return report


def _write_atomically(path: Path, text: str) -> None:
    """A crash mid-write leaves the previous file, never half of the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
