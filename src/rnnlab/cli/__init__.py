"""The ``rnnlab`` command: a thin argparse layer over the library.

Each command module registers its parsers and a ``func(args) -> int`` handler.
Library errors (:class:`rnnlab.core.errors.UserError` and its kinds) end as one
line on stderr with exit code 2, never a traceback; a setting out of range is
named by its flag. Warnings from the library are one line each too.

Parsing needs no torch: the parsers are rebuilt from ``parsers.json``, a description
generated from the live configs and registries (:mod:`rnnlab.cli.description`,
:mod:`rnnlab.cli.live`), and a command's module, with the library, is imported only
once argparse has accepted the arguments. ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from rnnlab.cli.description import (
    DESCRIPTION_PATH,
    load_deferred,
    parser_from,
    read_description,
)
from rnnlab.cli.parsing import cli_message, flags_for_settings
from rnnlab.core.errors import Notice, RankError, UserError

# Modules that hold what the parsers are generated from (tasks, cells). Once either is
# imported, this process may have registered a task or a cell of its own
# (rnnlab.register_task, register_cell), which parsers.json cannot know.
REGISTRY_MODULES = ("rnnlab.tasks.registry", "rnnlab.core.cells")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parsers: rebuilt from parsers.json (no torch), or from the live
    library when this process has loaded it already.

    A task or cell can only be registered by code running in this process, and that code
    has imported the registries; so when they are not loaded, parsers.json (kept equal to
    the live parsers by a test) lists every task and cell there is, and an unknown command
    is unknown to the live registry too: falling back would give the same error seconds
    later. When they are loaded, the library costs nothing more to ask, and it knows
    what this process registered. (Without parsers.json, an install that lost it, the
    live parsers still work, slowly.)
    """
    if any(name in sys.modules for name in REGISTRY_MODULES) or not DESCRIPTION_PATH.is_file():
        # lazy: the live parsers import every command's module (torch): loaded already, or no choice
        from rnnlab.cli.live import live_parser

        return live_parser()
    return parser_from(read_description())


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
        load_deferred(args)  # the command's handler: its module, and the library, load now
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
