"""One training run from plan to summary, the same for every task: create the run
record, seed, build the model, fit, reload the best weights, test, summarise."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from rnnlab.core.backends import backend_record
from rnnlab.core.cells import get_cell
from rnnlab.core.devices import describe_device
from rnnlab.core.distributed import SINGLE, Ranks
from rnnlab.core.errors import CheckpointError, ConfigError, RunFolderError, check
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.gradients import hidden_gradient_norms, measurable
from rnnlab.core.memory import keep_freed_memory
from rnnlab.core.models import ModelConfig, build_model, count_parameters
from rnnlab.core.records import RunRecord, error_detail
from rnnlab.core.train import (
    Batch,
    BatchSource,
    FitState,
    Objective,
    ShardedBatches,
    TrainConfig,
    fit,
    set_seed,
)
from rnnlab.core.version import __version__

CPU = torch.device("cpu")
# 4 GiB of float32 weights (Adam keeps two more copies): far past any task here
MAX_PARAMETERS = 2**30


def recurrent_parameters(cfg: ModelConfig) -> int:
    """Parameters of the recurrent layers (the bulk of every model here), from the config alone."""
    gates, h, d = get_cell(cfg.cell).num_gates, cfg.hidden_size, cfg.directions
    first = gates * h * (cfg.input_size + h + 2)  # input and hidden weights, two biases
    later = gates * h * (d * h + h + 2)  # layers above read both directions of the one below
    return d * (first + (cfg.num_layers - 1) * later)


@dataclass(frozen=True)
class RunPlan:
    out: Path
    task: str  # "mnist" | "recall" | "addition"
    model_kind: str  # "classifier" | "per_step"
    model: ModelConfig
    train: TrainConfig
    task_config: dict  # plain, task-specific settings (dataset, lengths, K, ...)
    force: bool = False
    resume: bool = False
    quiet: bool = False
    tensorboard: bool = False  # also write TensorBoard event files under <run>/tensorboard

    def __post_init__(self) -> None:
        """Refuse a model too large to allocate now, before any data is loaded or file written."""
        parameters = recurrent_parameters(self.model)
        if parameters > MAX_PARAMETERS:
            raise ConfigError("hidden", f"and layers would make {parameters:,} parameters, more "
                              f"than {MAX_PARAMETERS:,}; choose a smaller size or fewer layers")

    def config(self) -> dict:
        return {"task": self.task, "model_kind": self.model_kind, "model": self.model.to_dict(),
                "train": self.train.to_dict(), "task_config": self.task_config}

    def checkpoint_meta(self) -> dict:
        return {"task": self.task, "model_kind": self.model_kind,
                "model_config": self.model.to_dict(), "task_config": self.task_config}


@dataclass
class TaskData:
    train: BatchSource
    valid: Sequence[Batch]
    objective: Objective


def environment(device: torch.device = CPU, ranks: Ranks = SINGLE) -> dict:
    found = {"rnnlab": __version__, "torch": torch.__version__,
             "python": platform.python_version(), "threads": torch.get_num_threads(),
             **describe_device(device), "platform": platform.platform(),
             "command": " ".join(["rnnlab", *sys.argv[1:]])}
    return {**found, "ranks": ranks.world} if ranks.active else found


def saved_config(record: RunRecord) -> dict:
    """A run's config.json, fields added to the configs since it was written set to their
    defaults (so a record from before, say, --backend still matches its plan)."""
    config = record.config()
    model, train = config.get("model", {}), config.get("train", {})
    if not isinstance(model, dict) or not isinstance(train, dict):
        raise RunFolderError(f"{record.dir / 'config.json'} is not an rnnlab run config "
                             "(model and train must be objects)")
    return {**config, "model": {**ModelConfig().to_dict(), **model},
            "train": {**TrainConfig().to_dict(), **train}}


def with_saved_precision(plan: RunPlan) -> RunPlan:
    """``plan`` resuming a run whose record names its precision where the plan asks for
    ``auto`` (a run begun before auto was the default, or with fp32 or bf16 named): the run
    goes on in the precision it began in, and the same command still resumes it."""
    if not (plan.resume and plan.train.precision == "auto"
            and (plan.out / "config.json").is_file()):
        return plan
    saved = saved_config(RunRecord.open(plan.out))["train"].get("precision")
    if saved in (None, "auto"):
        return plan
    return replace(plan, train=replace(plan.train, precision=saved))


def open_record(plan: RunPlan) -> RunRecord:
    """A new record, or with ``resume`` the existing one after checking it is the same run."""
    if plan.resume:
        RunRecord(plan.out).remove_stale_temp_files()  # left by a writer that was killed
    if plan.resume and (plan.out / "config.json").is_file():
        record = RunRecord.open(plan.out)
        if saved_config(record) != plan.config():
            raise RunFolderError(f"cannot resume {plan.out}: its config differs from this one; "
                                 "set `force` to start over")
        return record
    return RunRecord.create(plan.out, plan.config(), force=plan.force)


def execute_run(plan: RunPlan, build_data: Callable[[], TaskData],
                test: Callable[[nn.Module, RunRecord], dict],
                on_epoch: Callable[[dict], None] | None = None,
                on_resume: Callable[[RunRecord], None] | None = None,
                ranks: Ranks = SINGLE, device: torch.device = CPU) -> dict:
    """Train ``plan`` and return its summary (the contents of summary.json).

    ``on_resume(record)`` runs when an unfinished run is resumed from its ``last``
    checkpoint, before training goes on (to finish per-epoch work a kill cut short).
    With several ``ranks`` every rank trains its shards; rank 0 alone writes the record,
    tests and returns the summary (the other ranks return {}). The model lives on
    ``device``; batches move to it as they are used.
    """
    if plan.tensorboard:  # checked before the run folder exists: a missing extra costs nothing
        on_epoch = with_tensorboard(plan.out, on_epoch)
    check(plan.train.batch_size >= ranks.world, "batch_size",
          f"({plan.train.batch_size}) must be at least the number of ranks ({ranks.world}): "
          "each global batch is split among them")
    plan = with_saved_precision(plan)
    record = ranks.on_main(lambda: open_record(plan)) or RunRecord.open(plan.out)
    if plan.resume and record.is_complete:
        return record.summary() if ranks.main else {}
    if ranks.main and plan.resume and on_resume is not None and record.has_checkpoint("last"):
        on_resume(record)  # before set_seed: whatever it draws cannot shift training
    started = time.perf_counter()
    keep_freed_memory()  # long sequences: no fresh pages for every batch's activations
    set_seed(plan.train.seed)
    model = build_model(plan.model_kind, plan.model).to(device)
    data = build_data()
    train = ShardedBatches(data.train, ranks) if ranks.active else data.train
    if ranks.main and not (plan.resume and record.has_checkpoint("last")):
        record_gradients(record, "init", model, data)  # a resumed run's model is not at init
    state = fit(model, train, data.valid, data.objective, plan.train, record,
                plan.checkpoint_meta(), resume=plan.resume, quiet=plan.quiet, on_epoch=on_epoch,
                ranks=ranks)
    if not ranks.main:
        return {}
    # the best weights, as tested; recorded before summary.json, which marks the run done
    return summarise(model, record, state, test, started, environment(device, ranks),
                     backend_record(model, plan.train.backend),
                     before_done=lambda best: record_gradients(record, "trained", best, data))


GRADIENTS_FILE = "gradients.json"


def record_gradients(record: RunRecord, when: str, model: nn.Module, data: TaskData) -> None:
    """Add the norm of dLoss/dh_t by step (:mod:`rnnlab.core.gradients`) at ``when`` ("init"
    or "trained") to the run's gradients.json, measured on the first validation batch. A
    resumed run keeps the curve its start measured; a model it cannot be measured on (two
    directions, padded sequences) records nothing."""
    path = record.dir / GRADIENTS_FILE
    found = record.read_json(GRADIENTS_FILE) if path.is_file() else {}
    if when in found or not data.valid or not measurable(model, data.valid[0]):
        return
    norms = hidden_gradient_norms(model, data.valid[0], data.objective)
    atomic_write_json(path, {**found, when: norms, "steps": len(norms)})


def summarise(model: nn.Module, record: RunRecord, state: FitState,
              test: Callable[[nn.Module, RunRecord], dict], started: float,
              environment: dict, backend: dict | None = None,
              before_done: Callable[[nn.Module], None] | None = None) -> dict:
    """Test the last and the best weights and write summary.json (``started``: the run's
    perf_counter start, for its wall time with testing, to which a resumed run adds the
    training time of the epochs earlier processes trained; ``backend``: which training path
    the recurrent layer took and why, :func:`rnnlab.core.backends.backend_record`).
    ``before_done(model)`` sees the best weights before summary.json is written: a kill
    before then leaves a run a resume finishes, not a finished run with a half-written file."""
    last_test = test(model, record) if state.best_epoch != state.epoch else None
    model.load_state_dict(record.load_checkpoint("best")["state_dict"])
    summary = {"test": test(model, record), "best_epoch": state.best_epoch,
               "epochs": state.epoch, "best_valid_accuracy": state.best_valid_accuracy,
               "parameters": count_parameters(model),
               "train_seconds": sum(t["seconds"] for t in state.timings),
               "wall_seconds": time.perf_counter() - started + state.earlier_seconds(),
               "environment": environment}
    if backend is not None:
        summary["backend"] = backend
    summary["test_last_epoch"] = last_test if last_test is not None else summary["test"]
    if before_done is not None:
        before_done(model)
    record.write_summary(summary)
    return summary


def with_tensorboard(run_dir: Path, on_epoch: Callable[[dict], None] | None):
    """Wrap ``on_epoch`` so each epoch's metrics also go to TensorBoard (an optional extra)."""
    try:  # lazy: tensorboard is a heavy optional extra, loaded only when asked for
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard", "needs the tensorboard package: "
                          "pip install 'rnnlab[tensorboard]'") from None
    writers: list = []  # created at the first epoch, inside the run folder

    def log(row: dict) -> None:
        if not writers:
            writers.append(SummaryWriter(log_dir=str(run_dir / "tensorboard")))
        writer = writers[0]
        for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr"):
            writer.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
        writer.flush()
        if on_epoch is not None:
            on_epoch(row)

    return log


def load_model(record: RunRecord, which: str = "best",
               device: torch.device = CPU) -> tuple[nn.Module, dict]:
    """Rebuild a run's model from a checkpoint, on ``device``; refuses mismatched configs or
    shapes."""
    payload = record.load_checkpoint(which)
    config = record.config()
    if (payload.get("model_config") != config.get("model")
            or payload.get("task") != config.get("task")):
        raise CheckpointError(f"checkpoint {which}.pt in {record.dir} does not match the run's "
                              "config.json")
    try:
        model = build_model(payload["model_kind"], ModelConfig(**payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {which}.pt in {record.dir} does not fit its model "
                              f"({error_detail(err)})") from None
    model.to(device).eval()
    return model, payload
