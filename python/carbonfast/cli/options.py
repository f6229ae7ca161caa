"""What every subcommand shares: the settings' options, --help-all, and the settings a
command line gives the meter."""

from __future__ import annotations

import argparse
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

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

# The settings' options a person reaches for; the rest (where the counters and libraries are,
# the estimate's model, distributed jobs) are for machines set up unusually, and only
# --help-all lists them, so that --help fits on a screen.
EVERYDAY_SETTINGS = frozenset({"gpu", "estimate", "country", "zone", "cloud", "intensity", "pue"})

_SHORT_TITLES = {
    "hardware": "measuring",
    "estimates": "measuring",
    "carbon": "carbon (default: the world average)",
}

HELP_ALL_HINT = (
    "more options (hardware paths, vendor libraries, estimates, distributed jobs): --help-all"
)

# Settings with an option that are not the meter's: where `run` writes its report.
_NOT_METER_SETTINGS = frozenset({"job_dir"})


def wants_help_all(argv: list[str]) -> bool:
    """Whether the command line asks for every option's help (before any `--`)."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--help-all" in words


def command_in(argv: list[str], commands: Iterable[str]) -> str | None:
    """The command named on the command line, as far as a look that skips the values of the
    options before it can tell (None: none found); the parse is the judge."""
    from carbonfast.config import SETTINGS

    valued = {"--" + k.replace("_", "-") for k, s in SETTINGS.items() if s.group and not s.is_flag}
    names = set(commands)
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] in names:
            return argv[i]
        i += 2 if argv[i] in valued else 1
    return None


class _HelpAll(argparse.Action):
    """--help-all: the full help. The parser was built with every option shown."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.print_help()
        parser.exit()


# Subcommands' own options that only --help-all lists, so that --help fits on a screen.
HELP_ALL_ONLY = frozenset({"--codecarbon"})


def add_help_all(p: argparse.ArgumentParser, show_all: bool) -> None:
    p.add_argument(
        "--help-all",
        action=_HelpAll,
        help="show every option: hardware paths, distributed jobs...",
    )
    if not show_all:
        p.epilog = HELP_ALL_HINT
        for action in p._actions:
            if HELP_ALL_ONLY.intersection(action.option_strings):
                action.help = argparse.SUPPRESS


def add_settings(p: argparse.ArgumentParser, show_all: bool, default: Any = None) -> None:
    """An option for every setting of the table (carbonfast.config.SETTINGS) that has one,
    named after it (`cpu_tdp_w`: --cpu-tdp-w), its environment variable in its help. Values are
    validated where every layer's are, in config.resolve. Unless `show_all`, only the everyday
    ones are in the help; the others work just the same."""
    from carbonfast.config import SETTINGS

    groups: dict[str, Any] = {}
    # A group without a title or description vanishes from the help when all it holds is hidden.
    hidden = p.add_argument_group()
    for name, setting in SETTINGS.items():
        if setting.group is None:
            continue
        shown = show_all or name in EVERYDAY_SETTINGS
        title: str = _GROUPS[setting.group][0]
        about: str | None = _GROUPS[setting.group][1]
        if not show_all:  # the short help: fewer sections, and no paragraphs about them
            title, about = _SHORT_TITLES.get(setting.group, title), None
        if shown and title not in groups:
            groups[title] = p.add_argument_group(title, about)
        group = groups[title] if shown else hidden
        option = "--" + name.replace("_", "-")
        helped = f"{setting.help} [{setting.env}]" if shown else argparse.SUPPRESS
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


def meter_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, for Meter (the rest come from the layers)."""
    from carbonfast.config import SETTINGS

    return {
        k: getattr(args, k)
        for k, s in SETTINGS.items()
        if s.group and hasattr(args, k) and k not in _NOT_METER_SETTINGS
    }


def history_path(explicit: str | None = None) -> str | None:
    """The history file; its bounds are checked with it, so that a bad one is an error before
    any command runs, not a run left unrecorded after it."""
    from carbonfast.config import resolve
    from carbonfast.report.history_prune import BOUNDED

    return resolve(("history", *BOUNDED.values()), {"history": explicit})["history"]


def add_history_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", metavar="FILE", help="history file (CARBONFAST_HISTORY)")
