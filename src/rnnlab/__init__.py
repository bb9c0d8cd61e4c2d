"""rnnlab: train, measure and explain recurrent networks on sequence tasks.

The Python API lives here (see :mod:`rnnlab.api` and docs/api.md); the command line
is ``rnnlab`` (:mod:`rnnlab.cli`).
"""

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

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "InputError", "Prediction", "Run",
    "RunFolderError", "Task", "UnknownNameError", "UserError", "__version__", "fetch_data", "load",
    "register_task", "reproduce", "sweep", "sweep_status", "tasks", "train",
]
