"""argparse pieces every command shares: one-line errors, defaults shown from the code,
and option groups generated from the settings declared on the config dataclasses."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.core.settings import Setting

SETTING_REFERENCE = re.compile(r"`([a-z][a-z0-9_]*)`")  # how library messages name a setting


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
        empty = action.default in (None, False, argparse.SUPPRESS)
        if not empty and action.option_strings and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def new_subparsers(parser: argparse.ArgumentParser, title: str, dest: str):
    return parser.add_subparsers(title=title, dest=dest, required=True,
                                 parser_class=OneLineErrorParser, metavar="COMMAND")


def add_setting(group, s: Setting, *, many: bool = False) -> None:
    """One option for setting ``s`` (``many``: it takes one value or several)."""
    help_text = s.help.replace("%", "%%")
    if s.kind is bool:
        group.add_argument(s.flag, dest=s.name, action="store_true", default=s.default,
                           help=help_text)
        return
    nargs = "+" if many else None
    group.add_argument(s.flag, dest=s.name, type=s.kind, default=s.default, choices=s.choices,
                       metavar=s.metavar, nargs=nargs, help=help_text)


def add_settings(parser: argparse.ArgumentParser, title: str, settings: Sequence[Setting],
                 many: Sequence[str] = ()) -> None:
    """An option group for ``settings``; those named in ``many`` take several values."""
    group = parser.add_argument_group(title)
    for s in settings:
        add_setting(group, s, many=s.name in many)


def values_of(args: argparse.Namespace, settings: Sequence[Setting]) -> dict:
    """The parsed values of ``settings``, by setting name."""
    return {s.name: getattr(args, s.name) for s in settings}


def flags_for_settings(text: str) -> str:
    """Library text in the command line's words: each `setting` becomes its flag."""
    return SETTING_REFERENCE.sub(lambda m: "--" + m.group(1).replace("_", "-"), text)


def cli_message(err: UserError) -> str:
    """A library error as the command line says it (a ConfigError names its setting first)."""
    return flags_for_settings(err.for_flag() if isinstance(err, ConfigError) else str(err))
