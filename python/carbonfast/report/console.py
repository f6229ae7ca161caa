"""The console: a compact summary of a run or measurement, and a live line while a command runs."""

from __future__ import annotations

import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from carbonfast.measure import Measurement
    from carbonfast.record import AdviceEntry
    from carbonfast.report.record import Record


# Characters that act on the terminal rather than show, beyond the control characters: the
# bidirectional overrides and isolates (they reorder what follows) and the line separators.
_INVISIBLE = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)


def printable(text: object) -> str:
    """`text` made safe to print on a terminal: control characters (C0, DEL, C1: ESC, CR, BEL,
    newline, tab...), bidirectional overrides and line separators are escaped as Python writes
    them (\\x1b, \\n, \\u202e). Everything carbonfast prints that came from outside (labels,
    commands, host and sensor names, notes, paths) goes through here, so that it can neither
    move the cursor, clear the screen, retitle the window nor break a table's line."""
    s = str(text)
    if s.isascii() and s.isprintable():
        return s
    return "".join(
        repr(c)[1:-1] if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _INVISIBLE else c for c in s
    )


def printable_lines(text: object) -> str:
    """`text` made safe to print, its line breaks kept (each line as printable() makes it)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def format_summary(record: Record, verbose: bool = False) -> str:
    """The summary `carbonfast run` and `carbonfast report` print: energy per domain, total,
    emissions, a benchmark's variants, the advice that saves most and the notes that matter.
    `verbose`: every advice and every note."""
    ended = "" if record.exit_code is None else f", exit code {record.exit_code}"
    lines = [f"carbonfast: `{record.title}` ran {record.duration_s:.3f} s{ended}"]
    if record.world_size is not None:
        whole = "the whole job" if record.hosts is not None else "its own part"
        lines.append(
            f"  job {record.job_id or '(no id)'}: rank {record.rank} of {record.world_size} on "
            f"host {record.host}; this report holds {whole}"
        )
    for host, h in (record.hosts or {}).items():
        energy = "unknown" if h.get("energy_j") is None else format_joules(h["energy_j"])
        missing = h.get("missing_ranks") or []
        lost = f", MISSING rank(s) {', '.join(map(str, missing))}" if missing else ""
        lines.append(
            f"  host {host:<9} {energy:>14}  ranks {', '.join(map(str, h.get('ranks', [])))}, "
            f"CPU and memory by rank {h.get('measured_by')}{lost}"
        )
    for name, d in record.domains.items():
        rng = d.energy_range_j
        if d.estimated and rng:
            tag = f"  estimated, {format_joules(rng[0])} to {format_joules(rng[1])}"
        elif d.stalled:
            tag = "  (never moved: left out of the total)"
        elif not d.in_total:
            tag = "  (inside total)"
        elif rng:  # a counter that refreshes slowly: the edges are bounded
            how = "interpolated" if d.interpolated else "measured"
            tag = f"  {how}, {format_joules(rng[0])} to {format_joules(rng[1])}"
        else:
            tag = "  measured"
        lines.append(f"  {name:<14} {format_joules(d.energy_j):>14}{tag}")
    if record.energy_j is None:
        lines.append("  energy         unknown (no readable counter; see `carbonfast info`)")
    else:
        tag = ""
        rng = record.energy_range_j
        if record.estimated and rng:
            tag = f"  ESTIMATED, range {format_joules(rng[0])} to {format_joules(rng[1])}"
        elif record.estimated:
            tag = "  ESTIMATED"
        elif rng and rng[0] != rng[1]:
            tag = f"  range {format_joules(rng[0])} to {format_joules(rng[1])}"
        if record.missing_ranks:
            missing = ", ".join(map(str, record.missing_ranks))
            tag += f"  PARTIAL: rank(s) {missing} missing (see notes)"
        elif record.partial:
            tag += "  PARTIAL: some counters unreadable (see notes)"
        total = format_joules(record.energy_j)
        lines.append(f"  total          {total:>14}   avg {record.power_w or 0:.2f} W{tag}")
        if record.attributed is not None:
            from carbonfast.attribution import summary_line

            whose = "this command" if record.kind == "run" else "its scope"
            lines.append(f"  {summary_line(record.attributed, whose)}")
    if record.emissions_kg is not None:
        from carbonfast.carbon.advice import fmt_mass

        where = record.intensity_label or record.location or "world average"
        rng_text = ""
        if record.estimated and record.emissions_range_kg:
            lo, hi = record.emissions_range_kg
            rng_text = f", range {fmt_mass(lo)} to {fmt_mass(hi)}"
        lines.append(
            f"  emissions      {fmt_mass(record.emissions_kg):>14} CO2e{rng_text}  ({where}: "
            f"{record.intensity_g_per_kwh:g} g/kWh x PUE {record.pue or 1:g})"
        )
        lines.append(f"  intensity from {record.intensity_source}")
    if record.bench is not None:
        lines.extend(f"  {line}" for line in _bench_table(record.bench))
    shown = record.advice if verbose else _best_advice(record.advice)
    lines.extend(f"  advice: {advice['message']}" for advice in shown)
    notes = record.notes if verbose else [n for n in record.notes if not _is_detail(n)]
    lines.extend(f"  note: {n}" for n in notes)
    hidden = len(record.advice) - len(shown) + len(record.notes) - len(notes)
    if hidden:
        lines.append(f"  --verbose: {hidden} more line(s) of advice and notes")
    return "\n".join(printable(line) for line in lines)


def _bench_table(bench: dict[str, Any]) -> list[str]:
    """A benchmark's comparison, as the benchmark itself prints it; a stored result that no
    longer reads as one (an edited file) is said to be unreadable, the summary kept."""
    from carbonfast.bench.result import BenchResult

    try:
        return str(BenchResult.from_dict(bench)).split("\n")
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError):
        return ["benchmark: its stored comparison is unreadable (see --json)"]


# What each kind of advice would save, in kg CO2e: the cleaner place's saving, or the emissions
# of the capacity kept idle. An everyday equivalent saves nothing.
_SAVING_FIGURE = {"location": "saved_kg", "idle": "idle_emissions_kg"}

# Notes that explain a figure the summary already marks (an estimate's model): worth reading
# once, not at every run.
_DETAIL_NOTES = ("is estimated, not measured",)


def _best_advice(advice: list[AdviceEntry]) -> list[AdviceEntry]:
    """The one advice that saves the most; where none says what it saves, the first."""
    if not advice:
        return []

    def saving(a: AdviceEntry) -> float:
        figure = _SAVING_FIGURE.get(a.get("kind", ""))
        value = (a.get("figures") or {}).get(figure) if figure else None
        return float(value) if isinstance(value, (int, float)) else -1.0

    best = max(advice, key=saving)
    return [best if saving(best) > 0 else advice[0]]


def _is_detail(note: str) -> bool:
    return any(marker in note for marker in _DETAIL_NOTES)


def format_joules(joules: float | None) -> str:
    if joules is None:
        return "unknown"
    if joules >= 3.6e6:
        return f"{joules / 3.6e6:.3f} kWh"
    if joules >= 1e3:
        return f"{joules / 1e3:.3f} kJ"
    return f"{joules:.4f} J"


class LiveLine(threading.Thread):
    """Rewrites one terminal line with elapsed time, power and energy while a window is open.

    The power is that of the last period, not the average since the start, so that a command
    that turns busy shows it at once."""

    def __init__(self, m: Measurement, stream: TextIO = sys.stderr, period_s: float = 0.5) -> None:
        super().__init__(name="carbonfast-live", daemon=True)
        self.m, self.stream, self.period_s = m, stream, period_s
        self.done = threading.Event()

    def run(self) -> None:
        last: tuple[float, float] = (0.0, 0.0)  # (duration_s, energy_j) at the last update
        while not self.done.wait(self.period_s):
            # One look at the open window (on a slow GPU counter it waits for a refresh).
            w = self.m.window()
            energy = w.total_j
            text = f"carbonfast: {w.duration_s:7.1f} s"
            if energy is not None:
                power = _power_since(last, w.duration_s, energy)
                text += f"  {power:8.1f} W  {format_joules(energy):>12}"
                last = (w.duration_s, energy)
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def _power_since(last: tuple[float, float], duration_s: float, energy_j: float) -> float:
    """Watts between the last update (duration, energy) and now."""
    elapsed = duration_s - last[0]
    return (energy_j - last[1]) / elapsed if elapsed > 0 else 0.0
