"""How the command speaks on stderr, and how a step that may fail after the command ran
becomes a warning instead of an exit."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def attempt(what: str | os.PathLike[str], step: Callable[[], Any]) -> Any:
    """Runs one step after the command: a failure becomes a warning naming `what`."""
    try:
        return step()
    except Exception as e:
        warn(f"{what}: {e}")
        return None


def warn(message: str) -> None:
    from carbonfast.report.console import printable

    # stderr may be closed or a broken pipe: a warning must not end the run either.
    with contextlib.suppress(OSError, ValueError):
        print(f"carbonfast: warning: {printable(message)}", file=sys.stderr, flush=True)


def say(text: str) -> None:
    from carbonfast.report.console import printable_lines

    with contextlib.suppress(OSError, ValueError):
        print(printable_lines(text), file=sys.stderr, flush=True)


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    from carbonfast.report.files import write_atomically

    write_atomically(path, text + "\n")
