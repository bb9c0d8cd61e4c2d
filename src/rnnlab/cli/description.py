"""The command line's parsers as data (``parsers.json``), and back to argparse.

The parsers are generated from the library's configs and registries, which import
torch; help and argument errors should not wait for that. So :mod:`rnnlab.cli.live`
builds the parsers from the live library once, :func:`describe` writes them down as
plain data (commands, flags, types, defaults, choices, help, groups), and
:func:`parser_from` rebuilds the same argparse tree from that data with nothing but the
standard library. A test rebuilds the description from the live code and fails when
the committed one differs (regenerate with ``make cli-parsers``).

Values that are Python objects (a command's handler, a task class) are written as
``{"import": "module:name"}`` and parse to a :class:`Deferred`, which :func:`load_deferred`
imports once the arguments are accepted: only then does the library load.

This module imports no part of the library but the argparse pieces in ``parsing``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.cli.parsing import HelpFormatter, OneLineErrorParser

DESCRIPTION_PATH = Path(__file__).with_name("parsers.json")
REGENERATE = "make cli-parsers (python -m rnnlab.cli.live)"

# What the description may name. Anything else makes `describe` fail, so that a new kind
# of argument is added here (torch-free) rather than silently dropped or imported.
FORMATTERS = {"HelpFormatter": HelpFormatter}
PARSER_CLASSES = {"OneLineErrorParser": OneLineErrorParser}
TYPES = {"int": int, "float": float, "str": str, "Path": Path}
ACTIONS = {"store": argparse._StoreAction, "store_true": argparse._StoreTrueAction,
           "append": argparse._AppendAction, "version": argparse._VersionAction,
           "boolean_optional": argparse.BooleanOptionalAction}
# how add_argument is told each kind of action (a name, or the class itself)
ACTION_ARGUMENTS = {"store": "store", "store_true": "store_true", "append": "append",
                    "version": "version", "boolean_optional": argparse.BooleanOptionalAction}
# argparse's own two groups: every parser starts with them
OWN_GROUPS = 2


class DescriptionError(Exception):
    """A parser uses something the description cannot hold (a developer's error)."""


@dataclass(frozen=True)
class Deferred:
    """A parsed default that names a Python object (``module:qualified.name``), imported
    only once the command runs."""

    reference: str

    def load(self) -> Any:
        module_name, _, qualified = self.reference.partition(":")
        # lazy: a command's module imports the library (torch); parsing must not
        found = importlib.import_module(module_name)
        for part in qualified.split("."):
            found = getattr(found, part)
        return found


def load_deferred(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with each :class:`Deferred` value replaced by the object it names."""
    for name, value in vars(args).items():
        if isinstance(value, Deferred):
            setattr(args, name, value.load())
    return args


def read_description(path: Path = DESCRIPTION_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- parser -> data ---------------------------------------------------------------------
def describe(parser: argparse.ArgumentParser) -> dict:
    """The whole parser tree under ``parser`` as JSON-ready data."""
    return {"generated_by": REGENERATE,
            "parser_class": name_of(PARSER_CLASSES, type(parser), parser.prog),
            "parser": describe_parser(parser)}


def describe_parser(parser: argparse.ArgumentParser) -> dict:
    unsupported = (parser.usage is not None or not parser.add_help
                   or parser.argument_default is not None or parser.prefix_chars != "-"
                   or parser.conflict_handler != "error" or not parser.allow_abbrev
                   or parser.fromfile_prefix_chars is not None
                   or bool(parser._mutually_exclusive_groups))
    if unsupported:
        raise DescriptionError(f"{parser.prog}: a parser option the description does not hold")
    groups = parser._action_groups
    return {
        "prog": parser.prog,
        "description": parser.description,
        "epilog": parser.epilog,
        "formatter": name_of(FORMATTERS, parser.formatter_class, parser.prog),
        "groups": [{"title": g.title, "description": g.description} for g in groups],
        "actions": [describe_action(parser, action, group_of(groups, action))
                    for action in parser._actions if not isinstance(action, argparse._HelpAction)],
        "defaults": {k: described_value(v, f"{parser.prog} default {k}")
                     for k, v in parser._defaults.items()},
    }


def group_of(groups: list, action: argparse.Action) -> int:
    return next(i for i, g in enumerate(groups) if any(a is action for a in g._group_actions))


def describe_action(parser: argparse.ArgumentParser, action: argparse.Action, group: int) -> dict:
    where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
    if isinstance(action, argparse._SubParsersAction):
        return describe_commands(action, group, where)
    kind = name_of(ACTIONS, type(action), where)
    described = {"action": kind, "group": group, "flags": list(action.option_strings),
                 "dest": action.dest, "help": action.help, "required": action.required,
                 "default": described_value(action.default, where)}
    if kind == "version":
        described["version"] = action.version
    if kind in ("store", "append"):
        described |= {
            "nargs": action.nargs, "const": action.const, "metavar": action.metavar,
            "type": None if action.type is None else name_of(TYPES, action.type, where),
            "choices": None if action.choices is None else list(action.choices)}
    return described


def describe_commands(action: argparse._SubParsersAction, group: int, where: str) -> dict:
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    parsers = action._name_parser_map
    if len({id(p) for p in parsers.values()}) != len(parsers):
        raise DescriptionError(f"{where}: command aliases are not described")
    return {"action": "parsers", "group": group, "dest": action.dest,
            "required": action.required, "metavar": action.metavar, "help": action.help,
            "parser_class": name_of(PARSER_CLASSES, action._parser_class, where),
            "commands": [{"name": name, "help": helps.get(name), "parser": describe_parser(p)}
                         for name, p in parsers.items()]}


def name_of(known: dict[str, Any], value: Any, where: str) -> str:
    for name, candidate in known.items():
        if candidate is value:
            return name
    raise DescriptionError(f"{where}: {value!r} is not one of {', '.join(known)}; add it to "
                           "rnnlab.cli.description (torch-free) first")


def described_value(value: Any, where: str) -> Any:
    """A default as JSON: plain values as they are, a function or class by import path."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [described_value(v, where) for v in value]
    if isinstance(value, Deferred):  # a parser rebuilt from a description
        return {"import": value.reference}
    qualified = getattr(value, "__qualname__", "")
    if callable(value) and qualified and "<" not in qualified:
        return {"import": f"{value.__module__}:{qualified}"}
    raise DescriptionError(f"{where}: the default {value!r} is not a plain value, function "
                           "or class")


# -- data -> parser ---------------------------------------------------------------------
def parser_from(description: dict) -> argparse.ArgumentParser:
    """The argparse tree ``description`` holds (see :func:`describe`)."""
    described = description["parser"]
    parser_class = PARSER_CLASSES[description["parser_class"]]
    parser = parser_class(prog=described["prog"], **parser_texts(described))
    fill(parser, described)
    return parser


def parser_texts(described: dict) -> dict:
    return {"description": described["description"], "epilog": described["epilog"],
            "formatter_class": FORMATTERS[described["formatter"]]}


def fill(parser: argparse.ArgumentParser, described: dict) -> None:
    """Add the described groups, arguments, commands and defaults to a new ``parser``."""
    group_texts = described["groups"]
    groups: dict[int, Any] = dict(enumerate(parser._action_groups[:OWN_GROUPS]))
    for action in described["actions"]:
        index = action["group"]
        if action["action"] == "parsers":  # in a group of their own when they have a title
            own = index < OWN_GROUPS
            groups[index] = add_commands(parser, action, {} if own else group_texts[index])
        else:
            if index not in groups:
                groups[index] = parser.add_argument_group(**group_texts[index])
            add_action(groups[index], action)
    for index, texts in enumerate(group_texts):  # a group with no argument (yet) keeps its place
        if index not in groups:
            groups[index] = parser.add_argument_group(**texts)
    parser._action_groups[:] = [groups[i] for i in range(len(group_texts))]
    parser.set_defaults(**{k: parsed_value(v) for k, v in described["defaults"].items()})


def add_commands(parser: argparse.ArgumentParser, described: dict, group_texts: dict):
    """The subcommands; returns the argument group argparse put them in."""
    commands = parser.add_subparsers(
        **group_texts, dest=described["dest"], required=described["required"],
        metavar=described["metavar"], help=described["help"],
        parser_class=PARSER_CLASSES[described["parser_class"]])
    for command in described["commands"]:
        child = command["parser"]
        texts = parser_texts(child) | ({} if command["help"] is None else {"help": command["help"]})
        fill(commands.add_parser(command["name"], prog=child["prog"], **texts), child)
    return parser._subparsers


def add_action(container, described: dict) -> None:
    kind = described["action"]
    options: dict[str, Any] = {"action": ACTION_ARGUMENTS[kind], "help": described["help"],
                               "default": parsed_value(described["default"])}
    flags = described["flags"]
    if flags:  # a positional's dest is its name; an option's may differ from its flag
        options |= {"dest": described["dest"], "required": described["required"]}
    else:
        flags = [described["dest"]]
    if kind == "boolean_optional":
        flags = flags[:1]  # the class adds the --no- flag itself
    if kind == "version":
        options = {"action": "version", "version": described["version"], "help": described["help"]}
    if kind in ("store", "append"):
        options |= {"nargs": described["nargs"], "const": described["const"],
                    "metavar": described["metavar"], "choices": described["choices"],
                    "type": None if described["type"] is None else TYPES[described["type"]]}
    action = container.add_argument(*flags, **options)
    # argparse infers a positional's `required` from its nargs and whether a default was
    # passed; the description passes every default, so it sets `required` as described
    action.required = described["required"]


def parsed_value(described: Any) -> Any:
    if isinstance(described, dict):
        return Deferred(described["import"])
    if isinstance(described, list):
        return [parsed_value(v) for v in described]
    return described

