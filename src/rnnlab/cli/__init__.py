"""The ``rnnlab`` command: a thin argparse layer over the library.

Each command module registers its parsers and a ``func(args) -> int`` handler.
Library errors (:class:`rnnlab.core.errors.UserError` and its kinds) end as one
line on stderr with exit code 2, never a traceback; a setting out of range is
named by its flag. Warnings from the library are one line each too.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from rnnlab.cli import data, study, sweep, train
from rnnlab.cli.parsing import (
    HelpFormatter,
    OneLineErrorParser,
    cli_message,
    flags_for_settings,
    new_subparsers,
)
from rnnlab.core.distributed import RankError
from rnnlab.core.errors import Notice, UserError
from rnnlab.core.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="rnnlab",
        description="Train, evaluate and explain recurrent networks (RNN, LSTM, GRU) "
        "on row-by-row MNIST, digit recall, binary addition and any registered task.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = new_subparsers(parser, "commands", "command")
    data.add_parser(commands)
    train.add_parsers(commands)
    study.add_reproduce_parser(commands)
    study.add_report_parser(commands)
    sweep.add_parser(commands)
    return parser


def os_error_line(err: OSError) -> str:
    """``path: reason`` of an operating-system error, on one line."""
    reason = err.strerror or str(err) or type(err).__name__
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "note" if issubclass(category, Notice) else "warning"
    sys.stderr.write(f"rnnlab: {kind}: {flags_for_settings(str(message))}\n")


def speaks() -> bool:
    """Whether this process prints errors: always, but for the ranks above 0 of a torchrun job
    (rank 0 speaks for the run)."""
    return os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that relaunch
    previous, warnings.showwarning = warnings.showwarning, show_warning
    try:
        return int(args.func(args) or 0)
    except RankError as err:  # every rank stops; rank 0 alone says why
        if speaks():
            sys.stderr.write(f"rnnlab: error: {cli_message(err)}\n")
        return UserError.exit_code
    except UserError as err:
        sys.stderr.write(f"rnnlab: error: {cli_message(err)}\n")
        return UserError.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:  # a path the system refuses (not a folder, no permission, disk full...)
        sys.stderr.write(f"rnnlab: error: {os_error_line(err)}\n")
        return UserError.exit_code
    except KeyboardInterrupt:
        if speaks():
            sys.stderr.write("rnnlab: interrupted; finished epochs and runs are kept\n")
        return 130
    finally:
        warnings.showwarning = previous
