"""Settings that users set, declared once on the config dataclasses.

A field made with :func:`setting` carries its help text (and, where it differs from the
field name, the keyword users type). The command line and the Python API are both
generated from these declarations, so a flag and a keyword argument can never drift
apart: ``hidden_size`` is ``--hidden`` on the command line and ``hidden=`` in
``rnnlab.train``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SETTING = "rnnlab.setting"  # the key of a field's metadata that makes it a user setting


@dataclass(frozen=True)
class Setting:
    """One user-facing setting of a config dataclass."""

    field: str  # the dataclass field it sets
    name: str  # the keyword (``batch_size``); the flag is ``--batch-size``
    help: str
    choices: tuple | None = None
    metavar: str | None = None
    kind: type | None = None  # the value's type when the default is None
    default: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(default: Any, help: str, *, name: str | None = None,
            choices: Sequence | Callable[[], Sequence] | None = None, metavar: str | None = None,
            kind: type | None = None) -> Any:
    """A dataclass field that users set (``epochs: int = setting(7, "passes over the data")``).

    ``choices`` may be a function, for registries that grow after the class is defined.
    """
    meta = {"help": help, "name": name, "choices": choices, "metavar": metavar, "kind": kind}
    return dataclasses.field(default=default, metadata={SETTING: meta})


def settings_of(config_type: type) -> list[Setting]:
    """The user settings of a config dataclass, in field order."""
    found = []
    for f in dataclasses.fields(config_type):
        meta = f.metadata.get(SETTING)
        if meta is not None:
            choices = meta["choices"]
            choices = tuple(choices() if callable(choices) else choices) if choices else None
            kind = meta["kind"] or type(f.default)
            found.append(Setting(f.name, meta["name"] or f.name, meta["help"], choices,
                                 meta["metavar"], kind, f.default))
    return found


def split_settings(config_type: type, values: dict[str, Any]) -> tuple[dict, dict]:
    """(field values for ``config_type`` taken from ``values`` by setting name, the rest)."""
    by_name = {s.name: s.field for s in settings_of(config_type)}
    taken = {by_name[k]: v for k, v in values.items() if k in by_name}
    rest = {k: v for k, v in values.items() if k not in by_name}
    return taken, rest
