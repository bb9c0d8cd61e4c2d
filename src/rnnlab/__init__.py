"""rnnlab: train, measure and explain recurrent networks on sequence tasks.

The Python API lives here (see :mod:`rnnlab.api` and docs/api.md); the command line
is ``rnnlab`` (:mod:`rnnlab.cli`).

The API's names load with :mod:`rnnlab.api` on first use, not with the package:
the API imports torch, and the command line (a subpackage, so it imports this
module first) answers ``--help`` and argument errors without it.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rnnlab.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    RunFolderError,
    UnknownNameError,
    UserError,
)
from rnnlab.core.version import __version__

if TYPE_CHECKING:  # what the names below are, for type checkers and editors
    from rnnlab.api import (
        Prediction,
        Run,
        Task,
        fetch_data,
        load,
        register_task,
        reproduce,
        sweep,
        sweep_status,
        tasks,
        train,
    )

API_NAMES = ("Prediction", "Run", "Task", "fetch_data", "load", "register_task", "reproduce",
             "sweep", "sweep_status", "tasks", "train")

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "InputError", "Prediction", "Run",
    "RunFolderError", "Task", "UnknownNameError", "UserError", "__version__", "fetch_data", "load",
    "register_task", "reproduce", "sweep", "sweep_status", "tasks", "train",
]


class Package(ModuleType):
    """The ``rnnlab`` module: its API names load on first use."""

    def __getattr__(self, name: str) -> Any:  # only for names not set yet
        if name not in API_NAMES:
            raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
        api = importlib.import_module("rnnlab.api")  # lazy: torch loads with the API
        for api_name in API_NAMES:
            super().__setattr__(api_name, getattr(api, api_name))
        return getattr(api, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # `rnnlab.tasks` is the API's function and also the subpackage's name: importing
        # the subpackage would set the attribute to the module and hide the function.
        if name in API_NAMES and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *API_NAMES})


sys.modules[__name__].__class__ = Package
