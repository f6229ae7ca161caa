"""The `carbonfast` command: `info`, `run`, `bench`, `history`, `report` and `serve`, one
module each; what they share is in `options` and `messages`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from typing import Any

from carbonfast.cli import options

__all__ = ["main"]

# Each command's module, loaded only for that command: `run` starts its guard process sooner.
COMMANDS = {
    "info": "which energy counters exist, which are readable, and why not",
    "run": "run a command and report the energy it used",
    "bench": "compare functions or statements by energy and time per call",
    "history": "runs and windows recorded so far, newest first",
    "report": "show a recorded run; write it as HTML",
    "serve": "export this host's energy to Prometheus (pip install 'carbonfast[serve]')",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    show_all = options.wants_help_all(argv)
    parser = build_parser(show_all, options.command_in(argv, COMMANDS))
    args = parser.parse_args(argv)
    if getattr(args, "unloaded", False):  # the command was not where the first look found it
        parser = build_parser(show_all, args.cmd)
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


def build_parser(show_all: bool = False, command: str | None = None) -> argparse.ArgumentParser:
    """The command's parser, with the options of `command` (None: of every command);
    `show_all`: every option in the help, as --help-all shows it."""
    from carbonfast import __version__

    # No abbreviations at the top: it sees every option of the command line, and would take
    # `history --job` for an ambiguous --job-id or --job-dir.
    p = argparse.ArgumentParser(
        prog="carbonfast",
        usage="carbonfast [OPTIONS] COMMAND [ARGS...]",
        description="Measure the energy of code from hardware counters.",
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"carbonfast {__version__}")
    options.add_help_all(p, show_all)
    options.add_settings(p, show_all)
    # The settings work after the command too (`carbonfast run --country FR -- cmd`): each
    # subcommand takes them again, without defaults of its own, so as not to undo them.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    options.add_settings(common, show_all, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", prog="carbonfast")
    for name, summary in COMMANDS.items():
        if command in (None, name):
            module = importlib.import_module(f"carbonfast.cli.{name}")
            q = module.add_parser(sub, common, summary)
            options.add_help_all(q, show_all)
        else:  # named in `carbonfast --help`; takes anything, and says it was not loaded
            stub = sub.add_parser(name, help=summary, add_help=False)
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(unloaded=True)
    return p


def _show_warnings_as_messages() -> None:
    """carbonfast's own warnings read as the command's other messages, not as Python's."""
    import warnings

    from carbonfast.cli.messages import warn
    from carbonfast.config import UntrustedConfigWarning

    shown = warnings.showwarning

    def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        if issubclass(category, UntrustedConfigWarning):
            warn(str(message))
        else:
            shown(message, category, *rest, **kw)

    warnings.showwarning = show


def _broken_pipe() -> int:
    """The reader went away (`carbonfast history | head -1`): stop quietly, as `cat` does."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE
