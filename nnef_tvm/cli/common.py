"""What every nnef-tvm command shares: one-line errors, exit codes, shape/flag parsing.

Exit status: 0 success, 1 a problem with the input (NNEFError, printed as
``file:line:col: error: message`` lines), 2 a bad command line (one line:
``prog: error: message``). No tracebacks for either; internal bugs still raise.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from ..errors import NNEFError


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError instead of printing usage + exiting."""

    def error(self, message):  # noqa: D401 - argparse API
        raise UsageError(message)


def format_error(prog: str, err: NNEFError) -> str:
    lines = []
    for e in err.errors:
        p = e.pos
        if p.file is None and p.line is None and p.offset is None:
            lines.append(f"{prog}: error: {e.message}")
        else:
            lines.append(e.located())
    return "\n".join(lines)


def run_main(prog: str, body: Callable[[argparse.Namespace], int],
             parser: ArgumentParser, argv: Optional[Sequence[str]]) -> int:
    """Parse ``argv`` and run ``body``, mapping errors to exit codes and one-line messages."""
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        return body(args) or 0
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except NNEFError as e:
        print(format_error(prog, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`nnef-run m.so --info | head`): stop quietly,
        # and point stdout at /dev/null so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def parse_shape(text: str) -> tuple[str, list[int]]:
    """``NAME=1,3,224,224`` -> (name, [1, 3, 224, 224])."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--shape expects NAME=D1,D2,..., got '{text}'")
    try:
        shape = [int(d) for d in dims.split(",")] if dims.strip() else []
    except ValueError:
        raise UsageError(f"--shape {name}: dimensions must be integers, got '{dims}'") from None
    if any(d < 1 for d in shape):
        raise UsageError(f"--shape {name}: dimensions must be >= 1, got '{dims}'")
    return name, shape


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def describe_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape is not None else "[?]"
