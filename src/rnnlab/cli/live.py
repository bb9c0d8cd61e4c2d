"""The command line's parsers built from the live library: each command module's
``add_parser`` over the configs' settings and the task and cell registries.

This is the source of ``parsers.json`` (:mod:`rnnlab.cli.description`), which the
command line reads instead so that help and argument errors need no torch. Regenerate
it after changing a setting, a task, a cell or a command's options::

    make cli-parsers            # python -m rnnlab.cli.live
    python -m rnnlab.cli.live --check   # exit 1 if parsers.json is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rnnlab.cli import bench, data, serve, study, sweep, train
from rnnlab.cli.description import DESCRIPTION_PATH, describe, read_description
from rnnlab.cli.parsing import HelpFormatter, OneLineErrorParser, new_subparsers
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.version import __version__


def live_parser() -> argparse.ArgumentParser:
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
    serve.add_parser(commands)
    bench.add_parser(commands)
    return parser


def description_text(description: dict) -> str:
    """The description as committed: stable key order, one item a line, reviewable diffs."""
    return json.dumps(description, indent=1, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="python -m rnnlab.cli.live",
                                      description="Regenerate rnnlab/cli/parsers.json.")
    options.add_argument("--check", action="store_true",
                         help="only compare: exit 1 if the committed file is out of date")
    check = options.parse_args(argv).check
    current = describe(live_parser())
    if check:
        stale = not DESCRIPTION_PATH.exists() or read_description() != current
        print(f"{DESCRIPTION_PATH}: {'out of date' if stale else 'up to date'}")
        return int(stale)
    atomic_write_text(DESCRIPTION_PATH, description_text(current))
    print(f"wrote {DESCRIPTION_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
