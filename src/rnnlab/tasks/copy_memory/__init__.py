"""The copy-memory task (Arjovsky et al. 2016): remember 10 symbols across a delay of T
steps, then reproduce them.

Classes: 0 is the blank, 1..8 the symbols, 9 the marker; each step is one-hot over
these 10 classes. A sequence with delay T has T + 20 steps: 10 symbols drawn uniformly
from 1..8, T - 1 blanks, the marker, then 10 blanks during which the symbols must be
reproduced. The target has one class per step: blanks for the first T + 10 steps, then
the 10 symbols in order. Every sequence has exactly T + 20 steps: nothing is padded.
The loss is the cross-entropy averaged over all T + 20 steps (the paper's); accuracy
is over the 10 recalled symbols only. A memoryless model (blanks, then a uniform guess
among the 8 symbols) scores a loss of 10 log 8 / (T + 20), given in the summary.
Training draws new sequences every epoch (seeded by seed and epoch); validation and
test sets are fixed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnnlab.core.devices import device_of
from rnnlab.core.errors import InputError
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import TaskData
from rnnlab.core.train import TrainConfig, metrics_of
from rnnlab.tasks.base import (
    Prediction,
    PredictOptions,
    Task,
)
from rnnlab.tasks.copy_memory import study as study_module
from rnnlab.tasks.copy_memory.data import (
    ALPHABET,
    CLASSES,
    COPIED,
    CopyConfig,
    CopyObjective,
    CopySet,
    CopySplits,
    FreshBatches,
    baseline_loss,
    encode,
    make_splits,
    recalled_right,
)

SMALL = {"train_size": 128, "valid_size": 64, "test_size": 128}  # --dry-run, --quick

TRAIN_EPILOG = """\
Examples:
  rnnlab train copy-memory --delay 100 --cell lstm --out runs/copy-lstm
  rnnlab predict runs/copy-lstm 3 1 4 1 5 2 6 5 3 5     (or 3141526535)
"""


class CopyMemoryTask(Task):
    """10 symbols, a delay of T steps, a marker: reproduce the symbols, one class per step."""

    name = "copy-memory"
    title = "copy memory: reproduce 10 symbols after a delay of T steps"
    study = study_module  # experiments, report section, run figures
    Config = CopyConfig
    model_kind = "per_step"
    model_defaults = ModelConfig(cell="lstm", input_size=CLASSES, hidden_size=128,
                                 num_outputs=CLASSES)
    train_defaults = TrainConfig(epochs=30, batch_size=64, lr=0.001, clip=1.0, seed=2111)
    input_help = "the 10 symbols to copy, each in 1..8 (3 1 4 1 5 2 6 5 3 5, or 3141526535)"
    train_epilog = TRAIN_EPILOG

    def model_shape(self) -> tuple[int, int]:
        return CLASSES, CLASSES

    def shrunk(self, batch_size: int) -> CopyMemoryTask:
        sizes = {k: min(v, getattr(self.config, k)) for k, v in SMALL.items()}
        sizes["train_size"] = max(sizes["train_size"], min(2 * batch_size, 1000))
        return CopyMemoryTask(replace(self.config, **sizes))

    def examples_per_epoch(self) -> int:
        return self.config.train_size

    def mean_steps(self) -> float:
        return float(self.config.steps)

    # -- data, training, testing ---------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> CopySplits:
        return make_splits(self.config, seed)

    def training_data(self, sets: CopySplits, train: TrainConfig) -> TaskData:
        source = FreshBatches(self.config.delay, self.config.train_size, train.batch_size,
                              train.seed)
        return TaskData(source, sets.valid.in_order(train.eval_batch_size), CopyObjective())

    def test(self, model: nn.Module, sets: CopySplits, batch_size: int,
             record: RunRecord) -> dict:
        return score(model, sets.test, batch_size)

    def evaluate(self, model: nn.Module, sets: CopySplits, batch_size: int) -> dict:
        return score(model, sets.test, batch_size)

    # -- prediction ----------------------------------------------------------------
    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """One sequence: its 10 symbols (strings like the command line's, ints, or one
        list or array), read across the run's delay."""
        try:
            symbols = parse_symbols(inputs)
        except InputError as err:
            yield err
            return
        if options.dry_run:
            yield Prediction(None, "", source=f"{COPIED} symbols")
            return
        yield recall_prediction(model, symbols, self.config.delay)

    def epoch_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f} "
                f"recalled {100 * row['train_accuracy']:.2f}% | valid loss "
                f"{row['valid_loss']:.4f} recalled {100 * row['valid_accuracy']:.2f}% | "
                f"{row['seconds']:.1f}s")

    def summary_line(self, out: Path, summary: dict) -> str:
        test = summary["test"]
        return (f"{out}: test loss {test['loss']:.4f} (memoryless {test['baseline_loss']:.4f}) "
                f"on {test['examples']} sequences of delay {self.config.delay}, recalled symbols "
                f"{100 * test['accuracy']:.2f}% right, whole sequences "
                f"{100 * test['sequence_accuracy']:.2f}%; best epoch {summary['best_epoch']}, "
                f"{summary['train_seconds']:.1f}s training")

    @classmethod
    def headline(cls, summary: dict) -> tuple[str, float]:
        return "recalled symbols right", 100 * summary["test"]["accuracy"]


# -- testing -----------------------------------------------------------------------
@torch.no_grad()
def score(model: nn.Module, test: CopySet, batch_size: int) -> dict:
    """Loss (all steps), recalled-symbol and whole-sequence accuracy, accuracy by position;
    one batch at a time, keeping only which recalled symbols were right."""
    model.eval()
    device, objective = device_of(model), CopyObjective()
    results, right = [], []
    for batch in (b.to(device) for b in test.in_order(batch_size)):
        logits = model(batch.x, batch.lengths)  # (B, T+20, 10)
        results.append(objective(logits, batch))
        right.append(recalled_right(logits, batch.y).cpu())  # (B, 10)
    overall, hits = metrics_of(results), torch.cat(right)
    return {"loss": overall["loss"], "accuracy": overall["accuracy"],
            "sequence_accuracy": float(hits.all(dim=1).float().mean()),
            "by_position": hits.float().mean(dim=0).tolist(),
            "baseline_loss": baseline_loss(test.delay), "examples": len(test),
            "batch_size": batch_size}


# -- prediction ----------------------------------------------------------------------
def parse_symbols(inputs: Sequence[Any]) -> list[int]:
    """10 symbols in 1..8: ``3 1 4 ...``, ``3141526535``, ``3,1,4,...``, ints or one list."""
    if len(inputs) == 1 and isinstance(inputs[0], list | tuple | np.ndarray | torch.Tensor):
        inputs = list(np.asarray(inputs[0]).reshape(-1).tolist())
    tokens: list[str] = []
    for item in inputs:
        text = str(item).replace(",", " ")
        tokens += list(text.replace(" ", "")) if isinstance(item, str) else text.split()
    if len(tokens) != COPIED:
        raise InputError(f"give exactly {COPIED} symbols in 1..{ALPHABET} (e.g. 3 1 4 1 5 2 6 5 "
                         f"3 5), got {len(tokens)}")
    bad = [t for t in tokens if not (t.isdigit() and 1 <= int(t) <= ALPHABET)]
    if bad:
        raise InputError(f"{bad[0][:40]!r} is not a symbol: symbols are the digits "
                         f"1..{ALPHABET}")
    return [int(t) for t in tokens]


@torch.no_grad()
def recall_prediction(model: nn.Module, symbols: list[int], delay: int) -> Prediction:
    """What ``model`` reproduces after the delay, beside the symbols it was given."""
    batch = encode(torch.tensor([symbols]), delay)  # x (1, T+20, 10)
    logits = model.eval()(batch.x.to(device_of(model)))[0, -COPIED:].cpu()  # (10, 10)
    recalled = logits.argmax(dim=-1).tolist()
    right = sum(a == b for a, b in zip(recalled, symbols, strict=True))
    text = (f"{' '.join(map(str, recalled))} ({right} of {COPIED} right; given "
            f"{' '.join(map(str, symbols))}, delay {delay})")
    return Prediction(tuple(recalled), text, None,
                      {"symbols": symbols, "delay": delay, "recalled": recalled, "right": right})
