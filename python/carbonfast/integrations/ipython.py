"""The IPython extension, `%load_ext carbonfast`: the `%carbonfast` and `%%carbonfast` magics.

    %%carbonfast [-q] [-o NAME] [LABEL]     measures the cell
    %carbonfast [-q] [-o NAME] [-l LABEL] STATEMENT     measures one statement

Each runs its code in a measurement window (`carbonfast.measure`) and shows the measurement
after the code's own output, as HTML in Jupyter and as text in a terminal. `-o NAME` keeps the
Measurement in the variable NAME; `-q` shows nothing. The code is run the way IPython's `%%time`
runs it: IPython syntax is allowed, and the value of a last expression is the cell's result.
An exception in the code reaches the user unchanged, its measurement shown (and kept) first.

Only `load_ipython_extension` imports this module: `import carbonfast` never imports IPython.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
    output_can_be_silenced,
)

from carbonfast.windows import measure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from IPython.core.interactiveshell import InteractiveShell

# The options a line starts with, before its statement: the statement is left exactly as typed.
_LINE_OPTION = re.compile(r"\s*(?:(-q)|-o\s+(\S+)|-l\s+(\S+))(?=\s|$)")
_USAGE = (
    "usage: %%carbonfast [-q] [-o NAME] [LABEL]  (a cell), "
    "%carbonfast [-q] [-o NAME] [-l LABEL] STATEMENT  (a line)"
)


@dataclass
class Options:
    """What the magic's line asks for."""

    label: str
    quiet: bool = False
    output: str | None = None
    # The statement of the line magic.
    code: str = ""


def parse_cell_line(line: str) -> Options:
    """`%%carbonfast`'s line: options anywhere, the rest the label (default "cell")."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{e}; {_USAGE}") from None
    opts = Options(label="")
    label: list[str] = []
    it = iter(words)
    for word in it:
        if word == "-q":
            opts.quiet = True
        elif word in ("-o", "-l"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{word} needs a value; {_USAGE}")
            if word == "-o":
                opts.output = _name(value)
            else:
                label.append(value)
        elif word.startswith("-") and len(word) > 1:
            raise UsageError(f"unknown option {word}; {_USAGE}")
        else:
            label.append(word)
    opts.label = " ".join(label) or "cell"
    return opts


def parse_line(line: str) -> Options:
    """`%carbonfast`'s line: options first, then the statement, kept as typed."""
    opts = Options(label="line")
    pos = 0
    while match := _LINE_OPTION.match(line, pos):
        quiet, output, label = match.groups()
        if quiet:
            opts.quiet = True
        elif output:
            opts.output = _name(output)
        else:
            opts.label = label
        pos = match.end()
    opts.code = line[pos:].strip()
    if not opts.code:
        raise UsageError(f"%carbonfast needs a statement to measure; {_USAGE}")
    return opts


def _name(value: str) -> str:
    if not value.isidentifier():
        raise UsageError(f"-o {value}: not a variable name; {_USAGE}")
    return value


@magics_class
class CarbonfastMagics(Magics):
    """`%carbonfast` and `%%carbonfast`."""

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    @output_can_be_silenced
    def carbonfast(
        self, line: str = "", cell: str | None = None, local_ns: dict[str, Any] | None = None
    ) -> Any:
        """Measures the energy of a cell (`%%carbonfast [-q] [-o NAME] [LABEL]`) or of one
        statement (`%carbonfast [-q] [-o NAME] [-l LABEL] STATEMENT`), and shows the
        measurement after the code's output. `-o NAME` keeps the Measurement in NAME; `-q`
        shows nothing. The value of a last expression is returned, as `%time` does."""
        opts = parse_line(line) if cell is None else parse_cell_line(line)
        shell = self._shell()
        code, last = self._compile(shell, opts.code if cell is None else cell)
        glob = shell.user_ns
        m = None
        try:
            with measure(opts.label) as m:
                if last is None:
                    return eval(code, glob, local_ns)
                exec(code, glob, local_ns)
                return None if last is True else eval(last, glob, local_ns)
        finally:
            # A failed cell's measurement too: what ran until the error cost energy.
            if m is not None:
                if opts.output is not None:
                    shell.user_ns[opts.output] = m
                if not opts.quiet:
                    from IPython import display

                    show: Any = display.display  # untyped in IPython
                    show(m)

    def _shell(self) -> InteractiveShell:
        if self.shell is None:
            raise UsageError("%carbonfast runs only inside IPython")
        return self.shell

    @staticmethod
    def _compile(shell: InteractiveShell, source: str) -> tuple[Any, Any]:
        """The code as IPython's `%%time` compiles it: transformed (magics, `!`, `?` allowed),
        then (code, None) for a lone expression to evaluate, else (statements, the last
        expression's code, or True where the code does not end in an expression)."""
        # Partly typed in IPython: its compiler takes trees as compile() does, though its
        # hints say text only, and the transforms have no hints.
        ipython: Any = shell
        compile_: Any = shell.compile
        transformed = ipython.transform_cell(source)
        tree = ipython.transform_ast(compile_.ast_parse(transformed))
        # Under a name IPython keeps the source for, so that a traceback shows the cell's lines.
        name = compile_.cache(transformed, shell.execution_count, source)
        body = tree.body
        if len(body) == 1 and isinstance(body[0], ast.Expr):
            return compile_(ast.Expression(body[0].value), name, "eval"), None
        if len(body) > 1 and isinstance(body[-1], ast.Expr):
            last = compile_(ast.Expression(body[-1].value), name, "eval")
            return compile_(ast.Module(body[:-1], []), name, "exec"), last
        return compile_(tree, name, "exec"), True


def load(ipython: InteractiveShell) -> None:
    ipython.register_magics(CarbonfastMagics)


def unload(ipython: InteractiveShell) -> None:
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("carbonfast", None)
    manager.registry.pop(CarbonfastMagics.__name__, None)
