"""The `carbonfast` command: `info`, `run`, `bench`, `history`, `report` and `serve`, one
module each; what they share is in `options` and `messages`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any

from carbonfast.cli import bench, history, info, options, report, run, serve

__all__ = ["main"]

_SUBCOMMANDS = (info, run, bench, history, report, serve)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(show_all=options.wants_help_all(argv))
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


def build_parser(show_all: bool = False) -> argparse.ArgumentParser:
    """The command's parser; `show_all`: every option in the help, as --help-all shows it."""
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
    for command in _SUBCOMMANDS:
        q = command.add_parser(sub, common, show_all)
        options.add_help_all(q, show_all)
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
