"""The errors a user can cause, as typed exceptions with one-line messages.

Library code raises these and returns values; only the command line prints them
(``rnnlab: error: <message>``, exit code 2, never a traceback). Messages name the
concept (a setting by its keyword, a file by its path), never a command-line flag:
the CLI translates a :class:`ConfigError`'s setting into its flag.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, setting, shape): one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A setting out of range or of the wrong kind.

    ``setting`` is the keyword users type (``hidden``, ``batch_size``); the message is
    ``"<setting> <problem>"``, and :meth:`for_flag` gives the command line's wording.
    """

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting} {problem}")
        self.setting, self.problem = setting, problem

    def for_flag(self) -> str:
        return f"--{self.setting.replace('_', '-')} {self.problem}"


class DataError(UserError):
    """A data set that is missing, corrupt or cannot be fetched."""


class RunFolderError(UserError):
    """A run folder that is missing, not a run, already exists, or holds bad records."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, unsafe, or does not fit its run."""


class InputError(UserError):
    """An input to predict that the task cannot read (a bad digit, image or bit string)."""


class UnknownNameError(UserError):
    """A task, cell or other registered name that does not exist."""


class RankError(UserError):
    """Rank 0 stopped the run with a user error; the other ranks stop with it (rank 0
    says why; the command line of the other ranks stays silent)."""


class Notice(UserWarning):
    """Something the user should know that is not an error (an input outside the
    lengths a model was trained on); the CLI prints ``rnnlab: note: <message>``."""


def check(ok: bool, setting: str, problem: str) -> None:
    """Raise ``ConfigError(setting, problem)`` unless ``ok``."""
    if not ok:
        raise ConfigError(setting, problem)


def check_choice(setting: str, value: object, choices: tuple | list) -> None:
    """Raise a ConfigError naming the valid choices unless ``value`` is one of them."""
    if value not in choices:
        raise ConfigError(setting, f"{value!r} is unknown; "
                                   f"choose one of {', '.join(map(str, choices))}")
