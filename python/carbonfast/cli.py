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
        usage="carbonfast run [--json FILE] [--quiet] -- CMD [ARGS...]",
    )
    pr.add_argument("--json", metavar="FILE", type=Path, help="also write the report as JSON")
    pr.add_argument("--quiet", action="store_true", help="no summary on stderr")
    pr.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    pr.set_defaults(handler=_cmd_run)
    return p


_METER_ARGS = (
    "source",
    "gpu",
    "estimate",
    "scope",
    "cpu_tdp_w",
    "cpu_threads",
    "ram_gb",
    "cpu_power_w",
    "ram_power_w",
    "country",
    "zone",
    "cloud",
    "intensity",
    "pue",
)


def _meter_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _METER_ARGS}


def _cmd_info(args: argparse.Namespace) -> int:
    from carbonfast.info import format_info, info

    data = info(args.powercap_root, **_meter_args(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_info(data))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from carbonfast.measure import Meter

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("run needs a command: carbonfast run [--json FILE] -- CMD [ARGS...]")
    meter = Meter(args.powercap_root, **_meter_args(args))
    window = meter.measure(shlex.join(command))
    before = os.times()
    with window as m:
        try:
            returncode = _run_forwarding_signals(command)
        except FileNotFoundError:
            print(f"carbonfast: command not found: {command[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"carbonfast: permission denied: {command[0]}", file=sys.stderr)
            return 126
    after = os.times()
    cpu_seconds = sum(after[i] - before[i] for i in range(4))  # self and children, user + system
    exit_code = returncode if returncode >= 0 else 128 - returncode
    from carbonfast.carbon.advice import advise

    report = _run_report(m.to_dict(), command, exit_code)
    report["cpu_seconds"] = cpu_seconds
    report["advice"] = [
        {"kind": a.kind, "message": a.message, "figures": a.figures}
        for a in advise(m, cpu_seconds=cpu_seconds)
    ]
    if args.json:
        _write_atomically(args.json, json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        print(format_summary(report), file=sys.stderr)
    return exit_code


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
        "pue": measurement["pue"],
        "domains": measurement["domains"],
        "notes": measurement["notes"],
        "carbonfast_version": __version__,
    }
    return report


def format_summary(report: dict[str, Any]) -> str:
    cmd = shlex.join(report["command"])
    lines = [
        f"carbonfast: `{cmd}` ran {report['duration_s']:.3f} s, exit code {report['exit_code']}"
    ]
    for name, d in report["domains"].items():
        if d["estimated"]:
            lo, hi = d["energy_range_j"]
            tag = f"  estimated, {_fmt_j(lo)} to {_fmt_j(hi)}"
        elif d["kind"] not in ("package", "dram", "gpu"):
            tag = "  (inside total)"
        else:
            tag = "  measured"
        lines.append(f"  {name:<14} {_fmt_j(d['energy_j']):>14}{tag}")
    if report["energy_j"] is None:
        lines.append("  energy         unknown (no readable counter; see `carbonfast info`)")
    else:
        tag = ""
        if report["estimated"]:
            lo, hi = report["energy_range_j"]
            tag = f"  ESTIMATED, range {_fmt_j(lo)} to {_fmt_j(hi)}"
        lines.append(
            f"  total          {_fmt_j(report['energy_j']):>14}   "
            f"avg {report['power_w'] or 0:.2f} W{tag}"
        )
    if report["emissions_kg"] is not None:
        from carbonfast.carbon.advice import fmt_mass

        where = report["location"] or "world average"
        rng = ""
        if report["estimated"]:
            lo, hi = report["emissions_range_kg"]
            rng = f", range {fmt_mass(lo)} to {fmt_mass(hi)}"
        lines.append(
            f"  emissions      {fmt_mass(report['emissions_kg']):>14} CO2e{rng}  ({where}: "
            f"{report['intensity_g_per_kwh']:g} g/kWh x PUE {report['pue']:g})"
        )
        lines.append(f"  intensity from {report['intensity_source']}")
    for advice in report.get("advice", []):
        lines.append(f"  advice: {advice['message']}")
    lines.extend(f"  note: {n}" for n in report["notes"])
    return "\n".join(lines)


def _fmt_j(joules: float) -> str:
    if joules >= 3.6e6:
        return f"{joules / 3.6e6:.3f} kWh"
    if joules >= 1e3:
        return f"{joules / 1e3:.3f} kJ"
    return f"{joules:.4f} J"


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
