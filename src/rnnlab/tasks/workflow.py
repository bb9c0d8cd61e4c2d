"""Train, evaluate and predict with any registered task: the one code path behind the
command line, the Python API and ``rnnlab reproduce``.

Settings arrive by name (``hidden``, ``batch_size``, a task's own ``k`` ...), as the
command line's flags and the API's keywords; :func:`make_plans` sorts them into the
model, training and task configs, so both front ends are generated from the same
dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlab.core import plots
from rnnlab.core.devices import resolve_device
from rnnlab.core.distributed import SINGLE, Ranks
from rnnlab.core.errors import ConfigError, InputError, RunFolderError, check
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, execute_run, load_model
from rnnlab.core.settings import Setting, setting, settings_of, split_settings
from rnnlab.core.train import TrainConfig
from rnnlab.tasks.base import Prediction, PredictOptions, Task
from rnnlab.tasks.registry import REGISTRY

SHOWN_RUNS = 8  # run folders named when a folder of runs is given where one run belongs


@dataclass(frozen=True)
class RunOptions:
    """Where a run goes and how it runs: the command line's output and runtime options."""

    out: str | None = setting(None, "run folder (config, metrics, checkpoints, figures)", kind=str)
    force: bool = setting(False, "overwrite an existing run folder")
    resume: bool = setting(False, "continue an interrupted run from its last epoch")
    threads: int | None = setting(None, "torch CPU threads (default: the cores this process may "
                                  "use, less those other processes keep busy at the start)",
                                  kind=int)
    quiet: bool = setting(False, "no progress bars")
    dry_run: bool = setting(False, "a few batches end to end, in seconds, to check the setup")
    no_figures: bool = setting(False, "skip drawing figures")
    tensorboard: bool = setting(False, "also write TensorBoard event files (needs the "
                                "tensorboard extra)")
    data_dir: str | None = setting(None, "data root (default: $RNNLAB_DATA or the user cache)",
                                   kind=str)
    device: str = setting("auto", "where the model runs: auto (CUDA, then MPS, then the CPU), "
                          "cpu, cuda, cuda:N or mps")
    deterministic: bool = setting(False, "deterministic kernels only, no cuDNN autotuning, no "
                                  "TF32 (bit-reproducible GPU runs; docs/determinism.md)")


def train_settings(task: type[Task]) -> dict[str, list[Setting]]:
    """The settings of ``rnnlab train TASK`` by group, defaults from the task's class."""
    model = [replace(s, default=getattr(task.model_defaults, s.field))
             for s in settings_of(ModelConfig)]
    optimisation = [replace(s, default=getattr(task.train_defaults, s.field))
                    for s in settings_of(TrainConfig)]
    runtime = [s for s in settings_of(RunOptions) if s.name != "data_dir" or task.uses_data_dir]
    return {"data": settings_of(task.Config), "model": model, "optimisation": optimisation,
            "output and runtime": runtime}


# -- plans ---------------------------------------------------------------------------
def check_kind(s: Setting, value: Any) -> None:
    """A value of the setting's type (an int is a float too; a bool is no number)."""
    if value is None and s.default is None:
        return
    kinds = (int, float) if s.kind is float else (s.kind,)
    number = s.kind in (int, float)
    ok = isinstance(value, kinds) and not (number and isinstance(value, bool))
    check(ok, s.name, f"must be {'an' if s.kind is int else 'a'} {s.kind.__name__}, "
          f"got {value!r}")


def check_kinds(task_class: type[Task], values: dict[str, Any]) -> None:
    for group in train_settings(task_class).values():
        for s in group:
            if s.name in values and s.name != "hidden":
                check_kind(s, values[s.name])


def hidden_sizes(value: Any) -> list[int]:
    """One hidden size or several (a list): several train one run each."""
    sizes = list(value) if isinstance(value, list | tuple) else [value]
    for size in sizes:
        check(isinstance(size, int) and not isinstance(size, bool), "hidden",
              f"must be an int, got {size!r}")
    check(bool(sizes), "hidden", "needs at least one size")
    check(len(set(sizes)) == len(sizes), "hidden",
          f"lists a size twice: {' '.join(map(str, sizes))}")
    return sizes


def make_plans(task_class: type[Task], values: dict[str, Any], options: RunOptions,
               sweep_folders: bool = False) -> list[RunPlan]:
    """The runs that ``values`` (settings by name) describe: one, or one per hidden size.

    ``sweep_folders``: each run in ``out/hidden-H`` (the command line for tasks with a
    hidden sweep); otherwise a single run goes to ``out`` itself.
    """
    model_values, rest = split_settings(ModelConfig, values)
    train_values, rest = split_settings(TrainConfig, rest)
    task_values, rest = split_settings(task_class.Config, rest)
    if rest:
        groups = train_settings(task_class)
        groups.pop("output and runtime")  # those are keywords of their own, not settings
        known = [s.name for group in groups.values() for s in group]
        raise ConfigError(sorted(rest)[0], f"is not a setting of the {task_class.name} task; "
                          f"its settings are {', '.join(known)}")
    check_kinds(task_class, values)
    task = task_class(task_class.Config(**task_values))
    train = replace(task_class.train_defaults, **train_values)
    sizes = hidden_sizes(model_values.pop("hidden_size", task_class.model_defaults.hidden_size))
    input_size, outputs = task.model_shape()
    models = [replace(task_class.model_defaults, **model_values, hidden_size=h,
                      input_size=input_size, num_outputs=outputs) for h in sizes]
    if options.dry_run:  # settings are checked above, then shrunk to a few batches
        task, train = task.shrunk(train.batch_size), replace(train, epochs=1)
    check(len(models) == 1 or sweep_folders, "hidden", "takes one size here")
    out = Path(options.out) if options.out is not None else Path("runs") / task_class.name
    return [RunPlan(out / f"hidden-{m.hidden_size}" if sweep_folders else out, task.name,
                    task.model_kind, m, train, task.config_dict(), force=options.force,
                    resume=options.resume, quiet=options.quiet, tensorboard=options.tensorboard)
            for m in models]


# -- training --------------------------------------------------------------------------
def train_run(plan: RunPlan, *, data_dir: str | None = None, figures: bool = True,
              on_epoch: Callable[[dict], None] | None = None, ranks: Ranks = SINGLE,
              device: str | torch.device = "auto") -> dict:
    """Train one run and return its summary; figures drawn from the record afterwards.
    With several ``ranks`` (torchrun), rank 0 writes and returns the summary, the others {}."""
    task = REGISTRY.get(plan.task).from_dict(plan.task_config)
    sets = task.load_sets(plan.train.seed, data_dir)
    batch = plan.train.eval_batch_size
    hook = task.epoch_hook(plan.out, sets, batch, on_epoch)
    summary = execute_run(plan, lambda: task.training_data(sets, plan.train),
                          lambda model, record: task.test(model, sets, batch, record),
                          hook if hook is not None else on_epoch,
                          on_resume=hook.catch_up if hook is not None else None, ranks=ranks,
                          device=device if isinstance(device, torch.device)
                          else resolve_device(device))
    if figures and ranks.main:
        draw_run_figures(plan.out, data_dir)
    return summary


def draw_run_figures(run_dir: str | Path, data_dir: str | None = None) -> list[Path]:
    """A finished run's figures, then the mark that they are complete (``figures/.drawn``)."""
    record = RunRecord.open(run_dir)
    task = REGISTRY.of_record(record)
    return record.draw_figures(lambda r: [*task.draw_figures(r, data_dir),
                                          *generic_figures(r)])


def generic_figures(record: RunRecord) -> list[Path]:
    """The figures every run gets whatever its task: the gradient reaching each step."""
    cell = record.config()["model"]["cell"].upper()
    drawn = plots.draw_gradient_norms(
        [(cell, record)], record.figures_dir / "gradient_norms.png",
        f"How far back the loss reaches: {cell}, gradient by step (log scale)")
    return [drawn] if drawn is not None else []


# -- finished runs ---------------------------------------------------------------------
def open_run(run_dir: str | Path) -> RunRecord:
    """A finished or interrupted run folder; a folder that holds runs says which."""
    path = Path(run_dir)
    if not (path / "config.json").is_file() and path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
        if inside:
            shown = ", ".join(str(path / name) for name in inside[:SHOWN_RUNS])
            more = f" and {len(inside) - SHOWN_RUNS} more" if len(inside) > SHOWN_RUNS else ""
            raise RunFolderError(f"{path} holds runs, not one run: choose one of {shown}{more}")
    return RunRecord.open(path)


def load_run_model(record: RunRecord, device: str = "auto") -> tuple[Task, nn.Module]:
    """The run's task and its best model (on ``device``); a checkpoint the task cannot use
    is refused."""
    task = REGISTRY.of_record(record)
    model, payload = load_model(record, "best", resolve_device(device))
    task.check_model(record, payload)
    return task, model


def evaluate_run(run_dir: str | Path, data_dir: str | None = None, dry_run: bool = False,
                 device: str = "auto") -> dict:
    """Test metrics recomputed from the run's best checkpoint (``dry_run``: a small slice)."""
    record = open_run(run_dir)
    # a bad checkpoint is refused before the data loads
    task, model = load_run_model(record, device)
    train = record.config()["train"]
    if dry_run:
        task = task.shrunk(train["batch_size"])
    sets = task.load_sets(train["seed"], data_dir, training=False)
    return task.evaluate(model, sets, train["eval_batch_size"])


PREDICT_DEFAULTS = PredictOptions()  # frozen, so one shared default is safe


def predict_run(run_dir: str | Path, inputs: Sequence[Any],
                options: PredictOptions = PREDICT_DEFAULTS,
                device: str = "auto") -> Iterator[Prediction | InputError]:
    """Predictions (or, in a bad input's place, its InputError) for ``inputs``."""
    record = open_run(run_dir)
    task, model = load_run_model(record, device)
    return task.predict(model, inputs, options)
