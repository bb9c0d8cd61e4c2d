"""Task 2: recall the digit at position K of a random digit sequence.

A sample is a sequence of L random digits 0-9 (L uniform in min-length..max-length),
one-hot encoded: 10 features per step. The model reads the whole sequence and
outputs one of 10 classes: the digit at zero-based position K (the reference used
K=1, the second digit). Sequences of a batch are zero-padded after their end and
the padding is skipped by packing, so each is read out at its true last step.

Data modes: ``reference`` is the exercise's fixed sets (800 training sequences,
100 rounds of one sequence of each length 3..10; 100 validation and 100 test
sequences of random length); ``fresh`` draws new training sequences every epoch
(``--train-size`` per epoch) and scores a fixed 10,000-sequence test set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.core.devices import device_of
from rnnlab.core.errors import InputError, Notice, check
from rnnlab.core.fileio import atomic_write_json, atomic_write_text
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord, rows_to_csv
from rnnlab.core.runs import TaskData
from rnnlab.core.train import (
    ClassificationObjective,
    ShuffledBatches,
    TrainConfig,
    evaluate_outputs,
    metrics_of,
)
from rnnlab.tasks.base import Prediction, PredictOptions, Task
from rnnlab.tasks.recall import study as study_module
from rnnlab.tasks.recall.data import (
    DIGITS,
    SIZE_NAMES,
    DigitSequences,
    FreshBatches,
    RecallConfig,
    RecallSet,
    RecallSplits,
    make_splits,
)

SMALL_SIZES = (64, 50, 200)  # --dry-run and --quick: train, validation, test sequences
EXAMPLES_PER_LENGTH = 1  # example sequences kept per length in examples.json
MAX_ERROR_EXAMPLES = 10

TRAIN_EPILOG = """\
Each hidden size trains one run, in OUT/hidden-H; the figures comparing them go
to OUT/figures. Examples:
  rnnlab train recall --out runs/recall-reference        (the exercise: batch 1, 800 sequences)
  rnnlab train recall --data fresh --hidden 5 10 --batch-size 128 --lr 0.01 \\
      --train-size 64000 --epochs 5 --out runs/recall-fresh
  rnnlab predict runs/recall-fresh/hidden-10 3 1 4 1 5
"""


class RecallTask(Task):
    """The digit at position K of a digit sequence: one label per sequence."""

    name = "recall"
    title = "recall the digit at position K of a digit sequence"
    study = study_module  # experiments, report section, run figures
    input_kind = "digits"  # the explorer's widget (rnnlab serve)
    Config = RecallConfig
    model_defaults = ModelConfig(cell="lstm", input_size=DIGITS, hidden_size=10,
                                 num_outputs=DIGITS)
    train_defaults = TrainConfig(epochs=10, batch_size=1, lr=0.002, seed=2111)
    hidden_sweep = study_module.HIDDEN
    input_help = "the digits of one sequence (3 1 4 1 5, or a list of ints)"
    train_epilog = TRAIN_EPILOG
    flaws = study_module.FLAWS

    def model_shape(self) -> tuple[int, int]:
        return DIGITS, DIGITS

    def shrunk(self, batch_size: int) -> RecallTask:
        train, valid, test = SMALL_SIZES
        sizes = (max(train, 2 * batch_size), valid, test)  # two batches at least
        return RecallTask(replace(self.config, **dict(zip(SIZE_NAMES, sizes, strict=True))))

    def examples_per_epoch(self) -> int:
        return self.config.train_size

    def mean_steps(self) -> float:
        return (self.config.min_length + self.config.max_length) / 2

    # -- data, training, testing ---------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> RecallSplits:
        return make_splits(self.config, seed, with_train=training)

    def training_data(self, sets: RecallSplits, train: TrainConfig) -> TaskData:
        if self.config.data == "fresh":
            source = FreshBatches(DigitSequences.from_config(self.config), self.config.train_size,
                                  train.batch_size, train.seed)
        else:
            assert sets.train is not None, "the reference data mode has a fixed training set"
            source = ShuffledBatches(sets.train.dataset(), train.batch_size, train.seed)
        valid = sets.valid.dataset().in_order(train.eval_batch_size)
        return TaskData(source, valid, ClassificationObjective())

    def test(self, model: nn.Module, sets: RecallSplits, batch_size: int,
             record: RunRecord) -> dict:
        """Test metrics (with accuracy by length); writes test_predictions.csv and examples.json."""
        metrics, logits = score(model, sets.test, batch_size)
        write_predictions(record, sets.test, logits, self.config.k)
        return metrics

    def evaluate(self, model: nn.Module, sets: RecallSplits, batch_size: int) -> dict:
        return score(model, sets.test, batch_size)[0]

    # -- prediction ----------------------------------------------------------------
    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """One sequence: ``inputs`` are its digits (strings like the command line's, ints,
        or one list or array of digits)."""
        check(1 <= options.top <= DIGITS, "top", f"must be in 1..{DIGITS}, got {options.top}")
        try:
            digits = parse_sequence(inputs, self.config.k, options.max_length)
        except InputError as err:
            yield err
            return
        cfg = self.config
        if not cfg.min_length <= len(digits) <= cfg.max_length:
            warnings.warn(f"length {len(digits)} is outside the trained lengths "
                          f"{cfg.min_length}..{cfg.max_length}", Notice, stacklevel=2)
        if options.dry_run:
            yield Prediction(None, "", source=f"{len(digits)} digits")
            return
        with torch.no_grad():
            x = DigitSequences.from_config(cfg).encode(digits)  # (1, L, 10)
            probabilities = model.eval()(x.to(device_of(model))).softmax(dim=-1)[0].cpu()  # (10,)
        yield digit_prediction(digits, cfg.k, probabilities, options.top)

    def summary_line(self, out: Path, summary: dict) -> str:
        test = summary["test"]
        return (f"{out}: test accuracy {100 * test['accuracy']:.2f}% on {test['examples']} "
                f"sequences (loss {test['loss']:.4f}), best epoch {summary['best_epoch']}, "
                f"{summary['train_seconds']:.1f}s training")

    # -- figures and study -----------------------------------------------------------
    def draw_comparison(self, records: Sequence[RunRecord], out_dir: Path) -> list[Path]:
        return study_module.draw_sweep_figures(records, out_dir)


# -- testing -----------------------------------------------------------------------
def accuracy_by_length(lengths: Tensor, correct: Tensor) -> list[dict]:
    rows = []
    for length in sorted(set(lengths.tolist())):
        chosen = lengths == length
        n, right = int(chosen.sum()), int(correct[chosen].sum())
        rows.append({"length": length, "examples": n, "correct": right, "accuracy": right / n})
    return rows


def score(model: nn.Module, test: RecallSet, batch_size: int) -> tuple[dict, Tensor]:
    """Overall and per-length test metrics, and the (N, 10) logits."""
    batches = test.dataset().in_order(batch_size)
    results, logits = evaluate_outputs(model, batches, ClassificationObjective())
    overall = metrics_of(results)
    correct = logits.argmax(dim=-1) == test.y
    metrics = {"loss": overall["loss"], "accuracy": overall["accuracy"], "examples": len(test),
               "batch_size": batch_size, "by_length": accuracy_by_length(test.lengths, correct)}
    return metrics, logits


def example_rows(test: RecallSet, index: Sequence[int], predictions: Tensor,
                 probabilities: Tensor) -> list[dict]:
    return [{"index": i, "sequence": seq, "length": len(seq), "label": int(test.y[i]),
             "prediction": int(predictions[i]), "probability": round(float(probabilities[i]), 4),
             "correct": bool(predictions[i] == test.y[i])}
            for i, seq in zip(index, test.sequences(index), strict=True)]


def choose_examples(test: RecallSet, correct: Tensor) -> tuple[list[int], list[int]]:
    """The first test sequences of each length (in length order), and the first errors."""
    chosen: list[int] = []
    for length in sorted(set(test.lengths.tolist())):
        chosen += torch.nonzero(test.lengths == length).flatten()[:EXAMPLES_PER_LENGTH].tolist()
    errors = torch.nonzero(~correct).flatten()[:MAX_ERROR_EXAMPLES].tolist()
    return chosen, errors


def write_predictions(record: RunRecord, test: RecallSet, logits: Tensor, k: int) -> None:
    """test_predictions.csv (every sequence) and examples.json (per length, and errors)."""
    probabilities, predictions = logits.softmax(dim=-1).max(dim=-1)
    rows = [{"index": i, "length": n, "label": t, "prediction": p,
             "sequence": "".join(map(str, seq))}
            for i, (n, t, p, seq) in enumerate(zip(test.lengths.tolist(), test.y.tolist(),
                                                   predictions.tolist(), test.sequences(),
                                                   strict=True))]
    atomic_write_text(record.dir / "test_predictions.csv", rows_to_csv(rows))
    chosen, errors = choose_examples(test, predictions == test.y)
    atomic_write_json(record.dir / "examples.json", {
        "k": k, "examples": example_rows(test, chosen, predictions, probabilities),
        "errors": example_rows(test, errors, predictions, probabilities)})


# -- prediction ----------------------------------------------------------------------
def sequence_tokens(inputs: Sequence[Any]) -> list[str]:
    """The digits' tokens: ``3 1 4``, ``"3 1 4"``, ``3,1,4``, ints, or one list or array."""
    if len(inputs) == 1 and isinstance(inputs[0], list | tuple | np.ndarray | torch.Tensor):
        inputs = list(np.asarray(inputs[0]).reshape(-1).tolist())
    tokens = []
    for item in inputs:
        tokens += str(item).replace(",", " ").split() if isinstance(item, str) else [str(item)]
    return tokens


def parse_sequence(inputs: Sequence[Any], k: int, max_length: int) -> list[int]:
    """Digits from the command line or Python values; an InputError otherwise."""
    tokens = sequence_tokens(inputs)
    if not tokens:
        raise InputError("empty sequence: give the digits to read, e.g. 3 1 4 1 5")
    digits = []
    for token in tokens:
        try:
            digit = int(token)
        except ValueError:
            raise InputError(f"{token!r} is not a digit; give digits 0..9 separated by "
                             "spaces") from None
        if not 0 <= digit < DIGITS:
            raise InputError(f"digit {digit} is outside 0..9; give one digit per argument, "
                             "e.g. 3 1 4")
        digits.append(digit)
    if len(digits) <= k:
        raise InputError(f"the sequence has {len(digits)} digit(s) but this run recalls position "
                         f"K={k} (zero-based): give at least {k + 1} digits")
    if len(digits) > max_length:
        raise InputError(f"the sequence has {len(digits)} digits, more than `max_length` "
                         f"{max_length}")
    return digits


def digit_prediction(digits: list[int], k: int, probabilities: Tensor, top: int) -> Prediction:
    values, classes = probabilities.topk(top)
    ranked = [(int(c), float(v)) for v, c in zip(values, classes, strict=True)]
    record = {"sequence": digits, "k": k, "prediction": ranked[0][0],
              "top": [{"digit": c, "probability": round(p, 6)} for c, p in ranked]}
    text = str(ranked[0][0]) if top == 1 else "\n".join(f"{c} {p:.4f}" for c, p in ranked)
    return Prediction(ranked[0][0], text, tuple(probabilities.tolist()), record)
