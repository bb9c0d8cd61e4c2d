"""The training loop every task shares: batches, objectives, ``train_one_epoch``,
``evaluate`` and ``fit`` (epochs, checkpoints, run record, resume).

A task supplies a :class:`BatchSource` for training (in-memory tensors or fresh
generated data), a list of evaluation batches, and an :class:`Objective` that
turns model output into a loss and a count of correct items.
"""

from __future__ import annotations

import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from rnnlab.core.backends import BACKENDS, PRECISIONS, use_backend
from rnnlab.core.devices import device_of
from rnnlab.core.distributed import SINGLE, Ranks, wrap
from rnnlab.core.errors import CheckpointError, check, check_choice
from rnnlab.core.records import RunRecord, error_detail
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(7, "passes over the training data")
    batch_size: int = setting(500, "sequences per step")
    lr: float = setting(0.01, "peak learning rate")
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = setting(0.0, "L2 / decoupled weight decay")
    momentum: float = 0.9  # SGD only
    clip: float | None = setting(None, "clip the global gradient norm to this (off when unset)",
                                 kind=float)  # None: no clipping
    schedule: str = setting("constant", "learning-rate schedule, stepped every batch",
                            choices=SCHEDULES)
    seed: int = setting(2111, "seed for weights, data order and generated data")
    stop_when: str | None = setting(
        None, "stop after the first epoch whose validation loss or accuracy meets this, e.g. "
        "'loss<0.01' or 'accuracy>=0.99' (off when unset)", kind=str, metavar="RULE")
    eval_batch_size: int = 2000  # larger than training batches: no gradients kept
    backend: str = setting(
        "auto", "recurrent layer: stock nn.*, a torch.compile'd step loop, or auto: the one "
        "timed faster on this machine for the run's shapes, cached (docs/benchmarks.md)",
        choices=BACKENDS)
    precision: str = setting(
        "auto", "auto: with backend auto, bf16 where this CPU has bf16 matmul hardware and it "
        "timed faster, else fp32 (the run record says which); bf16: bfloat16 matmuls "
        "(autocast), float32 weights and cell state; fp16: float16 autocast with a gradient "
        "scaler (for CUDA)", choices=PRECISIONS)

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.eval_batch_size >= 1, "eval_batch_size",
              f"must be >= 1, got {self.eval_batch_size}")
        check(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.clip is None or self.clip > 0, "clip", f"must be > 0, got {self.clip}")
        # the data order seeds torch.Generator with seed * 1_000_003 + epoch: it must fit 64 bits
        check(0 <= self.seed < 2**32, "seed", f"must be in 0..{2**32 - 1}, got {self.seed}")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("backend", BACKENDS), ("precision", PRECISIONS)):
            check_choice(name, getattr(self, name), choices)
        if self.stop_when is not None:
            StopRule.parse(self.stop_when)  # a rule that does not parse is refused here

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StopRule:
    """``stop_when``: a validation metric, a comparison and a threshold ("loss<0.01")."""

    metric: str  # "loss" | "accuracy": the epoch row's valid_<metric>
    compare: str  # "<" | "<=" | ">" | ">="
    threshold: float

    PATTERN = re.compile(r"^\s*(loss|accuracy)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")

    @classmethod
    def parse(cls, text: str) -> StopRule:
        found = cls.PATTERN.match(text)
        check(found is not None, "stop_when",
              f"{text!r} is not a rule like 'loss<0.01' or 'accuracy>=0.99'")
        try:
            threshold = float(found.group(3))
        except ValueError:
            threshold = math.nan
        check(math.isfinite(threshold), "stop_when", f"{found.group(3)!r} is not a finite number")
        return cls(found.group(1), found.group(2), threshold)

    def text(self) -> str:
        """The rule in words, for notes and reports: "validation loss < 0.01"."""
        return f"validation {self.metric} {self.compare} {self.threshold:g}"

    def met(self, row: dict[str, Any]) -> bool:
        value = row[f"valid_{self.metric}"]
        return {"<": value < self.threshold, "<=": value <= self.threshold,
                ">": value > self.threshold, ">=": value >= self.threshold}[self.compare]


def stopped(cfg: TrainConfig, rows: Sequence[dict[str, Any]]) -> bool:
    """True when the last epoch already met ``cfg.stop_when`` (checked on resume too)."""
    return cfg.stop_when is not None and bool(rows) and StopRule.parse(cfg.stop_when).met(rows[-1])


# -- batches ------------------------------------------------------------------------
@dataclass
class Batch:
    x: Tensor  # (B, T, F) float inputs, zero-padded past each length
    y: Tensor  # (B,) class ids, or (B, T) per-step targets
    lengths: Tensor | None = None  # (B,) true lengths; None when every sequence is full length

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device`` (itself when it is there); lengths stay on the CPU,
        where packing reads them."""
        if self.x.device == device:
            return self
        return Batch(self.x.to(device), self.y.to(device), self.lengths)


class BatchSource(Protocol):
    """Training data: a fresh, seeded order of batches for each epoch."""

    def epoch_batches(self, epoch: int) -> Iterator[Batch]: ...

    def num_batches(self) -> int: ...


class TensorDataset:
    """Sequences held as tensors in memory; batches are slices, no per-sample Python."""

    def __init__(self, x: Tensor, y: Tensor, lengths: Tensor | None = None):
        assert x.shape[0] == y.shape[0], f"{x.shape[0]} inputs but {y.shape[0]} targets"
        assert lengths is None or lengths.shape == (x.shape[0],), "lengths must be (N,)"
        self.x, self.y, self.lengths = x, y, lengths

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: Tensor | slice) -> Batch:
        if self.lengths is None:
            return Batch(self.x[index], self.y[index])
        lengths = self.lengths[index]
        longest = int(lengths.max())  # trim padding shared by the whole batch
        y = self.y[index]
        y = y[:, :longest] if y.dim() == 2 else y
        return Batch(self.x[index, :longest], y, lengths)

    def in_order(self, batch_size: int) -> list[Batch]:
        return [self.batch(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)]


class GeneratedBatches:
    """New sequences every epoch: ``make(count, generator)`` draws a batch of ``count`` from
    the generator of the stream (``namespace``, seed, "fresh", epoch), so every epoch can be
    replayed and none shifts another. A BatchSource; each task supplies ``make``."""

    def __init__(self, make: Callable[[int, torch.Generator], Batch], sequences: int,
                 batch_size: int, seed: int, namespace: str):
        self.make, self.sequences, self.batch_size = make, sequences, batch_size
        self.seed, self.namespace = seed, namespace

    def num_batches(self) -> int:
        return math.ceil(self.sequences / self.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        generator = stream_generator(self.namespace, self.seed, "fresh", epoch)
        for start in range(0, self.sequences, self.batch_size):
            yield self.make(min(self.batch_size, self.sequences - start), generator)


class ShuffledBatches:
    """A TensorDataset served in a seeded random order that depends only on (seed, epoch)."""

    def __init__(self, data: TensorDataset, batch_size: int, seed: int,
                 transform: Callable[[Batch, torch.Generator], Batch] | None = None):
        self.data, self.batch_size, self.seed, self.transform = data, batch_size, seed, transform

    def num_batches(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.data), generator=generator)
        for start in range(0, len(self.data), self.batch_size):
            batch = self.data.batch(order[start : start + self.batch_size])
            yield self.transform(batch, generator) if self.transform else batch


def shard(batch: Batch, ranks: Ranks) -> Batch:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    parts = [torch.tensor_split(t, ranks.world)[ranks.rank] if t is not None else None
             for t in (batch.x, batch.y, batch.lengths)]
    x, y, lengths = parts
    if lengths is not None:  # trim the padding this shard does not need
        longest = int(lengths.max())
        x, y = x[:, :longest], (y[:, :longest] if y.dim() == 2 else y)
    return Batch(x, y, lengths)


class ShardedBatches:
    """A BatchSource of global batches served as this rank's shards. A final global batch
    with fewer sequences than ranks is left out (every rank must take part in each step)."""

    def __init__(self, source: BatchSource, ranks: Ranks):
        self.source, self.ranks = source, ranks

    def num_batches(self) -> int:
        return self.source.num_batches()

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        for batch in self.source.epoch_batches(epoch):
            if len(batch) >= self.ranks.world:
                yield shard(batch, self.ranks)


# -- objectives ---------------------------------------------------------------------
@dataclass
class BatchResult:
    loss: Tensor  # mean over the batch's scored items, differentiable
    items: int  # scored items (sequences, or unpadded bits)
    correct: int


class Objective(Protocol):
    def __call__(self, output: Tensor, batch: Batch) -> BatchResult: ...


class ClassificationObjective:
    """Cross-entropy over one label per sequence; accuracy of the arg-max."""

    def __call__(self, logits: Tensor, batch: Batch) -> BatchResult:
        loss = F.cross_entropy(logits, batch.y)
        correct = int((logits.argmax(dim=-1) == batch.y).sum())
        return BatchResult(loss, len(batch), correct)


# -- optimisation -------------------------------------------------------------------
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A per-step schedule (stepped after every batch), or None for a constant rate."""
    total_steps = max(1, total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                   total_steps=total_steps)
    return None


def set_seed(seed: int) -> None:
    """One seed for Python's random, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress_bar(total: int, description: str, quiet: bool) -> tqdm:
    """A tqdm bar on stderr, silent when asked or when stderr is not a terminal."""
    return tqdm(total=total, desc=description, leave=False, unit="batch",
                disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)


# -- the two loops --------------------------------------------------------------------
def train_one_epoch(model: nn.Module, batches: Iterator[Batch], objective: Objective,
                    optimizer: torch.optim.Optimizer, scheduler=None, clip: float | None = None,
                    bar: tqdm | None = None, ranks: Ranks = SINGLE,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One pass over ``batches``; the loss and accuracy of the epoch (over every rank).
    ``scaler`` (fp16) scales the loss so small float16 gradients do not flush to zero."""
    model.train()
    device = device_of(model)
    loss_sum, items, correct = 0.0, 0, 0
    for batch in map(lambda b: b.to(device), batches):
        result = objective(model(batch.x, batch.lengths), batch)
        optimizer.zero_grad(set_to_none=True)
        optimizer_step(result.loss, model, optimizer, clip, scaler)
        if scheduler is not None:
            scheduler.step()
        loss_sum += float(result.loss.detach()) * result.items
        items, correct = items + result.items, correct + result.correct
        if bar is not None:
            bar.update(1)
    if ranks.active:
        loss_sum, items, correct = ranks.sum([loss_sum, items, correct])
    return {"loss": loss_sum / max(items, 1), "accuracy": correct / max(items, 1)}


def optimizer_step(loss: Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                   clip: float | None, scaler: torch.amp.GradScaler | None) -> None:
    """Backward, clip the global gradient norm, step (through ``scaler`` when there is one)."""
    if scaler is None:
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Sequence[Batch], objective: Objective) -> dict[str, float]:
    model.eval()
    device = device_of(model)
    return metrics_of(objective(model(b.x, b.lengths), b) for b in (b.to(device) for b in batches))


@torch.no_grad()
def evaluate_outputs(model: nn.Module, batches: Sequence[Batch],
                     objective: Objective) -> tuple[list[BatchResult], Tensor]:
    """Each batch's objective result and the concatenated outputs (logits), from one pass."""
    model.eval()
    batches = [batch.to(device_of(model)) for batch in batches]
    outputs = [model(batch.x, batch.lengths) for batch in batches]
    return ([objective(out, batch) for out, batch in zip(outputs, batches, strict=True)],
            torch.cat(outputs).cpu())


def metrics_of(results: Iterable[BatchResult]) -> dict[str, float]:
    """Mean loss per item and accuracy over batch results."""
    loss_sum, items, correct = 0.0, 0, 0
    for result in results:
        loss_sum += float(result.loss) * result.items
        items, correct = items + result.items, correct + result.correct
    return {"loss": loss_sum / max(items, 1), "accuracy": correct / max(items, 1)}


@torch.no_grad()
def predict_batches(model: nn.Module, batches: Sequence[Batch]) -> Tensor:
    """Concatenated raw model outputs (logits) for ``batches``, in order."""
    model.eval()
    device = device_of(model)
    return torch.cat([model(b.x, b.lengths) for b in (b.to(device) for b in batches)]).cpu()


# -- fit: epochs, records, checkpoints, resume ----------------------------------------
@dataclass
class FitState:
    """Everything that changes from epoch to epoch, saved in the last checkpoint."""

    epoch: int = 0  # epochs completed
    best_valid_accuracy: float = -1.0
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    resumed_after: int = 0  # epochs earlier processes trained (set on resume; not saved)

    def earlier_seconds(self) -> float:
        """The training seconds of the epochs earlier processes trained: a resumed run's
        wall time counts them beside its own."""
        return sum(t["seconds"] for t in self.timings if t["epoch"] <= self.resumed_after)

    def add_epoch(self, row: dict[str, Any], seconds: float) -> bool:
        """Record an epoch's row; True when it is the best so far (accuracy, then loss)."""
        self.rows.append(row)
        self.timings.append({"epoch": row["epoch"], "seconds": seconds})
        self.epoch = row["epoch"]
        if ((row["valid_accuracy"], -row["valid_loss"])
                <= (self.best_valid_accuracy, -self.best_valid_loss)):
            return False
        self.best_valid_accuracy, self.best_valid_loss = row["valid_accuracy"], row["valid_loss"]
        self.best_epoch = row["epoch"]
        return True


def checkpoint_payload(model: nn.Module, meta: dict, epoch: int) -> dict:
    return {**meta, "epoch": epoch, "state_dict": model.state_dict()}


def save_last(record: RunRecord, model, meta, optimizer, scheduler, state: FitState,
              scaler: torch.amp.GradScaler | None = None) -> None:
    payload = checkpoint_payload(model, meta, state.epoch)
    payload["optimizer"] = optimizer.state_dict()
    payload["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    payload["torch_rng"] = torch.get_rng_state()
    # resumed_after is this process's, not the run's: left out, a resumed run's checkpoints
    # equal an uninterrupted run's
    payload["fit_state"] = {k: v for k, v in asdict(state).items() if k != "resumed_after"}
    record.save_checkpoint("last", payload)


def restore_last(record: RunRecord, model, optimizer, scheduler,
                 scaler: torch.amp.GradScaler | None = None) -> FitState:
    payload = record.load_checkpoint("last")
    try:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and payload.get("scaler") is not None:
            scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["torch_rng"])
        return FitState(**payload["fit_state"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"cannot resume from {record.checkpoint_dir / 'last.pt'}: "
                              "it does not fit this run "
                              f"({error_detail(err, 160)}); set `force` to start over") from None


def fit(model: nn.Module, train: BatchSource, valid: Sequence[Batch], objective: Objective,
        cfg: TrainConfig, record: RunRecord, meta: dict, *, resume: bool = False,
        quiet: bool = False, on_epoch: Callable[[dict], None] | None = None,
        ranks: Ranks = SINGLE) -> FitState:
    """Train for ``cfg.epochs`` (fewer when an epoch meets ``cfg.stop_when``), logging each
    epoch and checkpointing best and last.

    ``meta`` is the plain description stored in every checkpoint (task, model kind,
    model config) so a checkpoint can rebuild its model without the run's code path.
    With several ``ranks``, ``train`` yields this rank's shards, DDP averages the
    gradients, and only rank 0 writes the record and calls ``on_epoch``.
    """
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * train.num_batches())
    # ranks time on their own: auto precision could differ between them, so they keep fp32
    precision = "fp32" if cfg.precision == "auto" and ranks.active else cfg.precision
    use_backend(model, cfg.backend, precision, train_steps=cfg.epochs * train.num_batches())
    trained = wrap(model, ranks)  # DDP around the model when several ranks train it
    scaler = torch.amp.GradScaler(device_of(model).type) if cfg.precision == "fp16" else None
    state = FitState()
    if resume and record.has_checkpoint("last"):
        state = restore_last(record, model, optimizer, scheduler, scaler)
        state.resumed_after = state.epoch
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if stopped(cfg, state.rows):  # solved: the rest of the budget is not spent
            break
        started = time.perf_counter()
        silent = quiet or not ranks.main
        with progress_bar(train.num_batches(), f"epoch {epoch}/{cfg.epochs}", silent) as bar:
            train_stats = train_one_epoch(trained, train.epoch_batches(epoch), objective,
                                          optimizer, scheduler, cfg.clip, bar, ranks, scaler)
        valid_stats = evaluate(model, valid, objective)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch, "train_loss": train_stats["loss"],
               "train_accuracy": train_stats["accuracy"],
               "valid_loss": valid_stats["loss"], "valid_accuracy": valid_stats["accuracy"],
               "lr": optimizer.param_groups[0]["lr"]}
        improved = state.add_epoch(row, seconds)
        if ranks.main:
            write_epoch(record, model, meta, (optimizer, scheduler, scaler), state, improved)
        # a callback (building a model, say) must not shift training's random stream:
        # last.pt's RNG state is replayed
        if on_epoch is not None and ranks.main:
            with torch.random.fork_rng(devices=[]):
                on_epoch({**row, "seconds": seconds, "epochs": cfg.epochs})
    if ranks.main and not record.has_checkpoint("best"):
        # zero epochs: the initial weights are the best we have
        record.save_checkpoint("best", checkpoint_payload(model, meta, 0))
    return state


def write_epoch(record: RunRecord, model: nn.Module, meta: dict, optimisation: tuple,
                state: FitState, improved: bool) -> None:
    """The best checkpoint (when the epoch improved), the per-epoch files, the last checkpoint
    (``optimisation``: the optimizer, scheduler and gradient scaler it resumes)."""
    optimizer, scheduler, scaler = optimisation
    if improved:
        record.save_checkpoint("best", checkpoint_payload(model, meta, state.epoch))
    record.write_metrics(state.rows, state.timings)
    save_last(record, model, meta, optimizer, scheduler, state, scaler)
