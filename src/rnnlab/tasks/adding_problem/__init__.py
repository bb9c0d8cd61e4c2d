"""The adding problem (Hochreiter & Schmidhuber 1997, in the modern form of Le et al. 2015
and Arjovsky et al. 2016): add the two marked numbers of a long sequence.

A sequence is T steps of 2 features (value ~ U[0, 1], marker in {0, 1}), exactly one
marker in each half (a step of 0..T//2-1 and one of T//2..T-1). The model reads all
T steps and answers one number, scored against the sum of the two marked values by
mean squared error. Every sequence has exactly T steps: nothing is padded. Training
draws new sequences every epoch (seeded by seed and epoch); validation and test sets
are fixed. "Accuracy" in the metrics is the fraction of sequences whose squared error
is below 0.04 (an answer within 0.2 of the sum). The baseline, always answering 1.0
(the target's mean), has an MSE of 1/6 (about 0.167): the summary gives it beside
the model's MSE, on the same test set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnnlab.core.devices import device_of
from rnnlab.core.errors import InputError, Notice
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import TaskData
from rnnlab.core.seeding import stream_generator
from rnnlab.core.train import TrainConfig, evaluate_outputs, metrics_of
from rnnlab.tasks.adding_problem import study as study_module
from rnnlab.tasks.adding_problem.data import (
    FEATURES,
    SEEDS,
    AddingConfig,
    AddingSet,
    AddingSplits,
    FreshBatches,
    SquaredErrorObjective,
    baseline_mse,
    encode,
    make_splits,
)
from rnnlab.tasks.base import (
    Prediction,
    PredictOptions,
    Task,
)

SMALL = {"train_size": 128, "valid_size": 64, "test_size": 128}  # --dry-run, --quick
EXAMPLES = 500  # test sequences whose answers examples.json keeps (the scatter figure)

TRAIN_EPILOG = """\
Examples:
  rnnlab train adding-problem --length 200 --cell lstm --out runs/adding-lstm
  rnnlab predict runs/adding-lstm 0.25@10 0.5@150     (two marked values at zero-based steps)
  rnnlab predict runs/adding-lstm 0.1 0.7* 0.3 0.2*   (every step; * marks a value)
"""


class AddingProblemTask(Task):
    """The sum of the two marked values of a T-step sequence: one number per sequence."""

    name = "adding-problem"
    title = "the adding problem: the sum of two marked values of a long sequence"
    study = study_module  # experiments, report section, run figures
    Config = AddingConfig
    model_defaults = ModelConfig(cell="lstm", input_size=FEATURES, hidden_size=128,
                                 num_outputs=1)
    train_defaults = TrainConfig(epochs=40, batch_size=64, lr=0.003, clip=1.0, seed=2111)
    input_help = ("two marked values at zero-based steps (0.25@10 0.5@150; the other steps "
                  "are fixed seeded values), or every step (0.1 0.7* 0.3 0.2*, * marks)")
    train_epilog = TRAIN_EPILOG

    def model_shape(self) -> tuple[int, int]:
        return FEATURES, 1

    def shrunk(self, batch_size: int) -> AddingProblemTask:
        sizes = {k: min(v, getattr(self.config, k)) for k, v in SMALL.items()}
        sizes["train_size"] = max(sizes["train_size"], min(2 * batch_size, 1000))
        return AddingProblemTask(replace(self.config, **sizes))

    def examples_per_epoch(self) -> int:
        return self.config.train_size

    def mean_steps(self) -> float:
        return float(self.config.length)

    # -- data, training, testing ---------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> AddingSplits:
        return make_splits(self.config, seed)

    def training_data(self, sets: AddingSplits, train: TrainConfig) -> TaskData:
        source = FreshBatches(self.config.length, self.config.train_size, train.batch_size,
                              train.seed)
        return TaskData(source, sets.valid.in_order(train.eval_batch_size),
                        SquaredErrorObjective())

    def test(self, model: nn.Module, sets: AddingSplits, batch_size: int,
             record: RunRecord) -> dict:
        """Test metrics; writes examples.json (true and predicted sums of test sequences)."""
        metrics, answers = score(model, sets.test, batch_size)
        atomic_write_json(record.dir / "examples.json", {
            "length": self.config.length,
            "examples": [{"index": i, "marked": sets.test.marked[i].tolist(),
                          "sum": round(float(sets.test.y[i]), 6),
                          "prediction": round(float(answers[i]), 6)}
                         for i in range(min(EXAMPLES, len(sets.test)))]})
        return metrics

    def evaluate(self, model: nn.Module, sets: AddingSplits, batch_size: int) -> dict:
        return score(model, sets.test, batch_size)[0]

    # -- prediction ----------------------------------------------------------------
    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """One sequence: two marked values ``VALUE@STEP`` (the other steps of the trained
        length filled with fixed seeded values), every step (``VALUE`` or ``VALUE*`` for a
        marked one), or one (T, 2) list or array of (value, marker) rows."""
        try:
            values, marks = parse_steps(inputs, self.config.length, options.max_length)
        except InputError as err:
            yield err
            return
        if len(values) != self.config.length:
            warnings.warn(f"length {len(values)} is not the trained length "
                          f"{self.config.length}", Notice, stacklevel=2)
        if options.dry_run:
            yield Prediction(None, "", source=f"{len(values)} steps")
            return
        yield sum_prediction(model, values, marks)

    def epoch_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']}/{row['epochs']}: train MSE {row['train_loss']:.4f} | "
                f"valid MSE {row['valid_loss']:.4f}, within 0.2 "
                f"{100 * row['valid_accuracy']:.2f}% | {row['seconds']:.1f}s")

    def summary_line(self, out: Path, summary: dict) -> str:
        test = summary["test"]
        return (f"{out}: test MSE {test['mse']:.4f} on {test['examples']} sequences of "
                f"T={self.config.length} (always 1.0: {test['baseline_mse']:.4f}), "
                f"{100 * test['accuracy']:.2f}% within 0.2; best epoch {summary['best_epoch']}, "
                f"{summary['train_seconds']:.1f}s training")

    @classmethod
    def headline(cls, summary: dict) -> tuple[str, float]:
        return "test sequences within 0.2 of the sum", 100 * summary["test"]["accuracy"]


# -- testing -----------------------------------------------------------------------
def score(model: nn.Module, test: AddingSet, batch_size: int) -> tuple[dict, torch.Tensor]:
    """The test metrics and the (N,) answers."""
    results, outputs = evaluate_outputs(model, test.in_order(batch_size), SquaredErrorObjective())
    overall = metrics_of(results)
    return ({"loss": overall["loss"], "mse": overall["loss"], "accuracy": overall["accuracy"],
             "baseline_mse": baseline_mse(test.y), "examples": len(test),
             "batch_size": batch_size}, outputs.squeeze(-1))


# -- prediction ----------------------------------------------------------------------
def number(token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"{what} {token[:40]!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{what} {token[:40]!r} is not a finite number")
    return value


def two_marked(tokens: list[str], length: int) -> tuple[list[float], list[int]]:
    """``VALUE@STEP VALUE@STEP``: the trained length, other steps fixed seeded values."""
    if len(tokens) != 2:
        raise InputError(f"give two marked values as VALUE@STEP (e.g. 0.25@10 0.5@150), "
                         f"got {len(tokens)}")
    values = torch.rand(length, generator=stream_generator(SEEDS, 0, "predict-fill")).tolist()
    marks = [0] * length
    for token in tokens:
        value, _, step_text = token.partition("@")
        if not step_text.strip().isdigit() or int(step_text) >= length:
            raise InputError(f"step {step_text[:40]!r} of {token[:40]!r} is not a zero-based "
                             f"step of 0..{length - 1} (the trained length)")
        step = int(step_text)
        if marks[step]:
            raise InputError(f"step {step} is marked twice")
        values[step], marks[step] = number(value, "value"), 1
    return values, marks


def step_tokens(inputs: Sequence[Any]) -> list[str]:
    """The tokens of the inputs: strings split at spaces and commas, or one (T, 2) array."""
    if len(inputs) == 1 and isinstance(inputs[0], list | tuple | np.ndarray | torch.Tensor):
        rows = np.asarray(inputs[0], dtype=float)
        if rows.ndim != 2 or rows.shape[1] != 2:
            raise InputError(f"give a (T, 2) array of (value, marker) rows, got shape "
                             f"{tuple(rows.shape)}")
        return [f"{v!r}*" if m == 1 else repr(v) for v, m in rows.tolist()]
    tokens = []
    for item in inputs:
        tokens += str(item).replace(",", " ").split()
    return tokens


def parse_steps(inputs: Sequence[Any], length: int,
                max_length: int) -> tuple[list[float], list[int]]:
    """(values, markers) of one sequence from the command line or Python values."""
    tokens = step_tokens(inputs)
    if not tokens:
        raise InputError("empty input: give two marked values such as 0.25@10 0.5@150")
    if any("@" in t for t in tokens):
        return two_marked(tokens, length)
    if len(tokens) > max_length:
        raise InputError(f"the sequence has {len(tokens)} steps, more than `max_length` "
                         f"{max_length}")
    marks = [1 if t.endswith("*") else 0 for t in tokens]
    values = [number(t.removesuffix("*"), "value") for t in tokens]
    if sum(marks) != 2 or len(tokens) < 2:
        raise InputError(f"mark exactly two steps with * (e.g. 0.1 0.7* 0.3 0.2*), got "
                         f"{sum(marks)} marked of {len(tokens)}")
    return values, marks


@torch.no_grad()
def sum_prediction(model: nn.Module, values: list[float], marks: list[int]) -> Prediction:
    """The model's answer for one sequence, beside the true sum of its marked values."""
    marked = torch.tensor([[i for i, m in enumerate(marks) if m]])  # (1, 2)
    x = encode(torch.tensor([values]), marked)  # (1, T, 2)
    answer = float(model.eval()(x.to(device_of(model)))[0, 0])
    true = sum(values[i] for i in marked[0].tolist())
    steps = marked[0].tolist()
    text = (f"{answer:.4f} (true sum {true:.4f} of steps {steps[0]} and {steps[1]}, "
            f"error {answer - true:+.4f})")
    return Prediction(answer, text, None, {"steps": len(values), "marked": steps,
                                           "prediction": answer, "sum": true})
