"""The task registry: the built-in tasks, and tasks registered from outside the package.

Generic code finds a task here by name (a run's ``config.json`` names its task) and
never imports a task module itself. A new built-in task is one module and one line
in ``BUILTIN``.
"""

from __future__ import annotations

from rnnlab.core.errors import UnknownNameError
from rnnlab.core.records import RunRecord
from rnnlab.tasks.adding_problem import AddingProblemTask
from rnnlab.tasks.addition import AdditionTask
from rnnlab.tasks.base import Task
from rnnlab.tasks.copy_memory import CopyMemoryTask
from rnnlab.tasks.mnist import MnistTask
from rnnlab.tasks.pixel_mnist import PixelMnistTask
from rnnlab.tasks.recall import RecallTask

BUILTIN: tuple[type[Task], ...] = (MnistTask, RecallTask, AdditionTask, AddingProblemTask,
                                   CopyMemoryTask, PixelMnistTask)


class TaskRegistry:
    """Task classes by name, in the order they were registered."""

    def __init__(self, tasks: tuple[type[Task], ...] = ()):
        self.classes: dict[str, type[Task]] = {}
        for task in tasks:
            self.register(task)

    def register(self, task: type[Task]) -> type[Task]:
        """Add ``task`` (a Task subclass); a task of the same name is replaced."""
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise TypeError(f"register a Task subclass, not {task!r}")
        name = getattr(task, "name", None)
        if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
            raise ValueError(f"{task.__name__}.name must be an identifier (hyphens allowed), "
                             f"got {name!r}")
        self.classes[name] = task
        return task

    def names(self) -> list[str]:
        return list(self.classes)

    def get(self, name: str) -> type[Task]:
        if name not in self.classes:
            raise UnknownNameError(f"unknown task {name!r}; "
                                   f"choose one of {', '.join(self.classes)}")
        return self.classes[name]

    def of_config(self, config: dict) -> Task:
        """The task instance a run's config.json describes."""
        return self.get(str(config.get("task", "?"))).from_dict(config.get("task_config") or {})

    def of_record(self, record: RunRecord) -> Task:
        return self.of_config(record.config())


REGISTRY = TaskRegistry(BUILTIN)
