"""The ``rnnlab`` command: a thin argparse layer over the configs of each concern.

Every subcommand module exposes ``add_parser(subparsers)`` which registers its
parser and sets ``func(args) -> int | None`` as the handler. User mistakes raise
:class:`rnnlab.core.errors.UserError` and end as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from rnnlab import __version__
from rnnlab.core.errors import ConfigError, UserError


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows defaults taken from the code (so help never drifts) and keeps description layout.

    Unlike ArgumentDefaultsHelpFormatter it leaves out empty defaults (None, False),
    whose meaning the help string itself says.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        empty = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        shown = not empty and action.option_strings
        if shown and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def new_subparsers(parser: argparse.ArgumentParser, title: str, dest: str):
    return parser.add_subparsers(
        title=title, dest=dest, required=True, parser_class=OneLineErrorParser, metavar="COMMAND"
    )


def build_parser() -> argparse.ArgumentParser:
    from rnnlab import tasks
    from rnnlab.study import report, reproduce
    from rnnlab.cli import data as data_cli

    parser = OneLineErrorParser(
        prog="rnnlab",
        description="Train, evaluate and explain recurrent networks (RNN, LSTM, GRU) "
        "on row-by-row MNIST, digit recall and binary addition.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = new_subparsers(parser, "commands", "command")
    data_cli.add_parser(commands)
    tasks.add_parsers(commands)
    reproduce.add_parser(commands)
    report.add_parser(commands)
    return parser


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def busy_cores(interval: float = 0.1) -> float:
    """CPUs kept busy by other processes right now (this one sleeps while /proc/stat is
    sampled over ``interval`` seconds); 0 where /proc/stat is missing."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0.0
    busy = 1.0 - (idle1 - idle0) / max(1, total1 - total0)
    return max(0.0, busy) * (os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a run without ``--threads``: the usable cores less those other
    processes keep busy, at least 1. With one of two cores busy, two threads trained
    LSTM(100) at half the speed of one thread here (docs/benchmarks.md)."""
    cores = usable_cores()
    return max(1, min(cores, round(cores - busy_cores())))


def os_error_line(err: OSError) -> str:
    """``path: reason`` of an operating-system error, on one line."""
    reason = err.strerror or str(err) or type(err).__name__
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:  # the library names the setting; the command line, its flag
        sys.stderr.write(f"rnnlab: error: {err.for_flag()}\n")
        return UserError.exit_code
    except UserError as err:
        sys.stderr.write(f"rnnlab: error: {err}\n")
        return UserError.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:  # a path the system refuses (not a folder, no permission, disk full...)
        sys.stderr.write(f"rnnlab: error: {os_error_line(err)}\n")
        return UserError.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("rnnlab: interrupted; finished epochs and runs are kept\n")
        return 130
