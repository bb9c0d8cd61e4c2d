"""The Python API: a task, a model and a prediction in a few lines.

    import rnnlab
    rnnlab.tasks()                                   # ['mnist', 'recall', 'addition', ...]
    run = rnnlab.train("recall", hidden=10, epochs=3, seed=1, out="runs/r10")
    run.summary, run.metrics, run.model              # test metrics, per-epoch rows, the module
    run.predict([3, 1, 4, 1, 5])                     # Prediction(label=1, ...)
    run.evaluate()                                   # metrics recomputed from the checkpoint
    run = rnnlab.load("runs/r10")                    # any run folder
    rnnlab.register_task(MyTask)                     # a task defined outside the package
    rnnlab.sweep("recall", trials=12, params={"lr": "log:3e-3:3e-2"}, out="sweeps/r")

The keyword settings of :func:`train` are the command line's flags (``batch_size`` is
``--batch-size``), generated from the same config dataclasses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from rnnlab.core.data import dataset_dir, fetch
from rnnlab.core.devices import make_deterministic, resolve_device
from rnnlab.core.errors import InputError
from rnnlab.core.records import RunRecord
from rnnlab.core.threads import configure_threads
from rnnlab.study.reproduce import ReproduceOptions, ReproduceResult
from rnnlab.study.reproduce import reproduce as reproduce_options
from rnnlab.study.sweep import (
    SweepOptions,
    SweepResult,
    SweepStatus,
    fixed_settings,
    run_sweep,
    search_space,
)
from rnnlab.study.sweep import sweep_status as study_status
from rnnlab.study.sweep_report import build_sweep_report
from rnnlab.tasks.base import Prediction, PredictOptions, Task
from rnnlab.tasks.registry import REGISTRY
from rnnlab.tasks.workflow import (
    RunOptions,
    evaluate_run,
    load_run_model,
    make_plans,
    open_run,
    train_run,
)


def tasks() -> list[str]:
    """The names of the registered tasks."""
    return REGISTRY.names()


def register_task(task_class: type[Task]) -> type[Task]:
    """Make a Task subclass defined outside the package trainable by name (also usable as a
    class decorator); a task of the same name is replaced."""
    return REGISTRY.register(task_class)


class Run:
    """A run folder: its records, its model, and prediction and evaluation with it."""

    def __init__(self, path: str | Path, device: str = "auto"):
        self.record = open_run(path)
        self.path = self.record.dir
        self.device = device  # where the model is loaded: auto, cpu, cuda, cuda:N, mps

    def __repr__(self) -> str:
        return f"rnnlab.Run({str(self.path)!r})"

    @property
    def config(self) -> dict:
        return self.record.config()

    @property
    def summary(self) -> dict:
        """The test metrics and run facts of summary.json (a finished run)."""
        return self.record.summary()

    @property
    def metrics(self) -> list[dict]:
        """One row per epoch: train and validation loss and accuracy, learning rate."""
        return self.record.metrics()

    @cached_property
    def _task_and_model(self) -> tuple[Task, nn.Module]:
        return load_run_model(self.record, self.device)

    @property
    def task(self) -> Task:
        return self._task_and_model[0]

    @property
    def model(self) -> nn.Module:
        """The best-validation model, in eval mode."""
        return self._task_and_model[1]

    @property
    def figures(self) -> list[Path]:
        return sorted(self.record.figures_dir.glob("*.png"))

    def predict(self, *inputs: Any, top: int = 1, max_length: int = 10_000,
                batch_size: int = 256, show_input: str | None = None
                ) -> Prediction | list[Prediction]:
        """What the model says about ``inputs``: what the command line takes (strings,
        image paths) or Python values (digits, ints, arrays, PIL images). One Prediction
        when the inputs make one, else a list; a bad input raises its InputError."""
        options = PredictOptions(top=top, max_length=max_length, batch_size=batch_size,
                                 show_input=show_input)
        results = list(self.task.predict(self.model, inputs, options))
        for result in results:
            if isinstance(result, InputError):
                raise result
        return results[0] if len(results) == 1 else results

    def evaluate(self, data_dir: str | None = None) -> dict:
        """Test metrics recomputed from the best checkpoint."""
        return evaluate_run(self.path, data_dir=data_dir, device=self.device)


def fetch_data(dataset: str = "mnist", data_dir: str | Path | None = None,
               log: Callable[[str], None] | None = None) -> Path:
    """Make a data set present and verified (``rnnlab data fetch``); returns its folder.
    ``log`` receives each step's line (e.g. ``print``); by default nothing is shown."""
    fetch(dataset, data_dir, log=log if log is not None else (lambda line: None))
    return dataset_dir(dataset, data_dir)


def load(path: str | Path, device: str = "auto") -> Run:
    """The run in folder ``path``; its model runs on ``device`` (auto: CUDA, MPS, the CPU)."""
    return Run(path, device)


def train(task: str, *, out: str | Path | None = None, force: bool = False, resume: bool = False,
          threads: int | None = None, dry_run: bool = False, no_figures: bool = False,
          tensorboard: bool = False, data_dir: str | None = None, device: str = "auto",
          deterministic: bool = False,
          on_epoch: Callable[[dict], None] | None = None, **settings: Any) -> Run:
    """Train ``task`` with ``settings`` (the command line's flags as keywords: ``cell``,
    ``hidden``, ``layers``, ``bidirectional``, ``epochs``, ``batch_size``, ``lr``,
    ``schedule``, ``seed``, ``backend``, the task's own ...); returns the finished run.
    ``out=None`` trains in a new temporary folder. ``on_epoch(row)`` sees every epoch."""
    task_class = REGISTRY.get(task)
    where = resolve_device(device)  # a device this machine lacks is refused first
    if deterministic:  # process-wide, as torch keeps these flags
        make_deterministic()
    folder = str(out) if out is not None else tempfile.mkdtemp(prefix=f"rnnlab-{task}-")
    options = RunOptions(out=folder, force=force, resume=resume, threads=threads, quiet=True,
                         dry_run=dry_run, no_figures=no_figures, tensorboard=tensorboard,
                         data_dir=data_dir, device=device, deterministic=deterministic)
    plan = make_plans(task_class, settings, options)[0]
    configure_threads(threads)
    train_run(plan, data_dir=data_dir, figures=not no_figures, on_epoch=on_epoch, device=where)
    return Run(plan.out, device)


def reproduce(**options: Any) -> ReproduceResult:
    """``rnnlab reproduce`` from Python: ``profile``, ``quick``, ``tasks``, ``seeds``, ``out``,
    ``jobs`` ... (see :class:`rnnlab.study.reproduce.ReproduceOptions`)."""
    return reproduce_options(ReproduceOptions(**options))


def setting_text(value: Any) -> str:
    """A fixed setting as the command line's ``--set NAME=VALUE`` writes it."""
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def sweep(task: str, *, trials: int, params: dict[str, str], fixed: dict[str, Any] | None = None,
          out: str | Path | None = None, storage: str | None = None, study: str | None = None,
          workers: int = 1, pruner: str = "median", metric: str = "valid_accuracy",
          seed: int | None = None, figures: bool = True, data_dir: str | None = None,
          report: bool = True) -> SweepResult:
    """``rnnlab sweep TASK`` from Python: search ``params`` (setting -> spec such as
    ``"log:1e-4:1e-2"``, ``"int:8:64"``, ``"choice:lstm,gru"``) with Optuna until the study
    holds ``trials`` complete or pruned trials; ``fixed`` settings are shared by every trial.
    ``out=None`` searches in a new temporary folder; ``study=None`` is the study ``sweep``.
    Writes the sweep's report into ``out`` unless ``report`` is False. Needs the ``sweep``
    extra (Optuna)."""
    task_class = REGISTRY.get(task)
    texts = {name: setting_text(value) for name, value in (fixed or {}).items()}
    folder = str(out) if out is not None else tempfile.mkdtemp(prefix=f"rnnlab-sweep-{task}-")
    options = SweepOptions(task=task, params=search_space(task_class, dict(params)),
                           trials=trials, fixed=fixed_settings(task_class, texts),
                           study=study or SweepOptions.study, storage=storage, workers=workers,
                           pruner=pruner, metric=metric, out=folder, seed=seed, figures=figures,
                           data_dir=data_dir)
    result = run_sweep(options)
    if report:
        build_sweep_report(folder)
    return result


def sweep_status(out: str | Path | None = None, *, storage: str | None = None,
                 study: str | None = None) -> SweepStatus:
    """The trials by state and the best trial of sweep folder ``out``, or of the study named
    ``study`` in ``storage`` (``rnnlab sweep status``)."""
    return study_status(out, storage=storage, study=study)


__all__ = ["Prediction", "Run", "RunRecord", "SweepResult", "SweepStatus", "Task", "fetch_data",
           "load", "register_task", "reproduce", "sweep", "sweep_status", "tasks", "train"]
