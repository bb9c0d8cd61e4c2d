"""Task 3: add two binary numbers fed least significant bit first; the network
outputs one sum bit per step.

A pair of length L is L steps of 2 features (bit i of N1, bit i of N2), with N1
and N2 uniform in [0, 2^(L-1)) so the sum fits in L bits; the target is the L
bits of the sum, least significant first. Batches of mixed lengths are padded
with zeros and the padding is never scored. Metrics: bit accuracy and
whole-number accuracy (every bit right), per length and averaged over lengths.

Data: "reference" is the exercise's fixed set of --train-size pairs (250); "fresh"
draws new pairs every epoch. Lengths are drawn uniformly from --train-lengths
(a range 1-20, one length 5, or a list 3,5,10). The test set by epoch is the
exercise's: --test-pairs pairs with L uniform in 1..20. After training every
length of --eval-lengths is scored on --eval-pairs pairs of exactly that length.

Beyond the exercise: --train-noise adds Gaussian noise to training inputs (what
lets a model trained on L <= 10 add 1,000-bit numbers), --batching by-length
gives each fresh batch one length (no padding), --train-bits varied favours long
carry chains, and --loss multiclass-ce is the exercise's flawed loss, to measure it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlab.core.devices import device_of
from rnnlab.core.errors import InputError, check
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import TaskData, load_model
from rnnlab.core.train import Batch, ShuffledBatches, TrainConfig
from rnnlab.tasks.addition import study as study_module
from rnnlab.tasks.addition.data import (
    TEST_BY_EPOCH,
    AdditionConfig,
    AdditionSets,
    BitObjective,
    FreshBatches,
    add_noise,
    bits_to_int,
    build_sets,
    in_batches,
    int_to_bits,
    read_test_by_epoch,
    score,
    score_by_length,
)
from rnnlab.tasks.base import Prediction, PredictOptions, Task

SMALL = {"train_size": 64, "test_pairs": 20, "eval_pairs": 10}  # --dry-run, --quick: seconds


class AdditionTask(Task):
    """Two binary numbers, least significant bit first; one sum bit per step."""

    name = "addition"
    title = "binary addition, one sum bit per step"
    study = study_module  # experiments, report section, run figures
    input_kind = "bits"  # the explorer's widget (rnnlab serve)
    Config = AdditionConfig
    model_kind = "per_step"
    model_defaults = ModelConfig(cell="lstm", input_size=2, hidden_size=5, num_outputs=1)
    train_defaults = TrainConfig(epochs=5, batch_size=1, lr=0.01, seed=2111)
    input_help = "two binary numbers, most significant bit first (1011 0110), or two ints"
    flaws = study_module.FLAWS

    def model_shape(self) -> tuple[int, int]:
        return 2, 1

    def shrunk(self, batch_size: int) -> AdditionTask:
        """Sizes cut to ``SMALL`` (never raised)."""
        cfg = self.config
        return AdditionTask(replace(cfg, **{k: min(v, getattr(cfg, k)) for k, v in SMALL.items()}))

    def examples_per_epoch(self) -> int:
        return self.config.train_size

    def mean_steps(self) -> float:
        lengths = self.config.train_length_list
        return sum(lengths) / len(lengths)

    # -- data, training, testing ---------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> AdditionSets:
        cfg = self.config if training else replace(self.config, data="fresh")  # no training set
        return build_sets(cfg, seed)

    def training_data(self, sets: AdditionSets, train: TrainConfig) -> TaskData:
        cfg = self.config
        if sets.train is not None:
            def transform(batch: Batch, generator: torch.Generator) -> Batch:
                return add_noise(batch, generator, cfg.train_noise)

            source = ShuffledBatches(sets.train, train.batch_size, train.seed,
                                     transform if cfg.train_noise else None)
        else:
            source = FreshBatches(sets.task, cfg.train_length_list, cfg.train_size,
                                  train.batch_size, cfg.train_bits == "varied", cfg.train_noise,
                                  cfg.batching == "by-length")
        return TaskData(source, in_batches(sets.valid, train.eval_batch_size),
                        BitObjective(cfg.loss))

    def test(self, model: nn.Module, sets: AdditionSets, batch_size: int,
             record: RunRecord) -> dict:
        return self.evaluate(model, sets, batch_size)

    def evaluate(self, model: nn.Module, sets: AdditionSets, batch_size: int) -> dict:
        """The summary's test dict: the exercise's test set, then every eval length."""
        cfg, objective = self.config, BitObjective(self.config.loss)
        overall = score(model, in_batches(sets.test, batch_size), objective)
        rows = score_by_length(model, sets.task, cfg.eval_length_list, cfg.eval_pairs, objective,
                               batch_size)
        return {"loss": overall["loss"], "accuracy": overall["bit_accuracy"],
                "number_accuracy": overall["number_accuracy"], "pairs": overall["pairs"],
                "bit_accuracy_mean": sum(r["bit_accuracy"] for r in rows) / len(rows),
                "number_accuracy_mean": sum(r["number_accuracy"] for r in rows) / len(rows),
                "eval_lengths": cfg.eval_lengths, "pairs_per_length": cfg.eval_pairs,
                "by_length": rows}

    def epoch_hook(self, run_dir: Path, sets: AdditionSets, batch_size: int,
                   then: Callable[[dict], None] | None) -> EpochTester:
        """Scores every epoch on the exercise's test set (``test_by_epoch.jsonl``); ``then``
        receives fit's row plus ``test_loss``, ``test_accuracy`` and ``test_number_accuracy``."""
        return EpochTester(run_dir, in_batches(sets.test, batch_size),
                           BitObjective(self.config.loss), then)

    # -- prediction ----------------------------------------------------------------
    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """Two numbers: binary strings (most significant bit first, as typed) or ints >= 0."""
        try:
            first, second = parse_operands(inputs, options.max_length)
        except InputError as err:
            yield err
            return
        if options.dry_run:
            yield Prediction(None, "", source="two numbers")
            return
        yield sum_prediction(add_with_model(model, first, second))

    @classmethod
    def headline(cls, summary: dict) -> tuple[str, float]:
        return study_module.headline(summary)

    def epoch_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f} "
                f"bits {100 * row['train_accuracy']:.2f}% | valid bits "
                f"{100 * row['valid_accuracy']:.2f}% | test loss {row['test_loss']:.4f} bits "
                f"{100 * row['test_accuracy']:.2f}% numbers "
                f"{100 * row['test_number_accuracy']:.2f}% "
                f"| {row['seconds']:.1f}s")

    def summary_line(self, out: Path, summary: dict) -> str:
        test = summary["test"]
        return (f"{out}: over lengths {test['eval_lengths']}, mean bit accuracy "
                f"{100 * test['bit_accuracy_mean']:.2f}%, mean whole-number accuracy "
                f"{100 * test['number_accuracy_mean']:.2f}%; best epoch {summary['best_epoch']}, "
                f"{summary['train_seconds']:.1f}s training")


class EpochTester:
    """``on_epoch`` callback: scores the epoch's weights (the ``last`` checkpoint, just
    written) on the test set and rewrites ``test_by_epoch.jsonl``; then calls ``then``."""

    def __init__(self, out: Path, test: list[Batch], objective: BitObjective,
                 then: Callable[[dict], None] | None = None):
        self.out, self.test, self.objective, self.then = out, test, objective, then

    def __call__(self, row: dict) -> None:
        new = self.score_last(RunRecord.open(self.out), row["epoch"])
        if self.then is not None:
            self.then({**row, **new})

    def score_last(self, record: RunRecord, epoch: int) -> dict:
        """Score the ``last`` checkpoint as epoch ``epoch`` and rewrite the file with its row."""
        model, _ = load_model(record, "last")
        stats = score(model, self.test, self.objective)
        new = {"epoch": epoch, "test_loss": stats["loss"], "test_accuracy": stats["bit_accuracy"],
               "test_number_accuracy": stats["number_accuracy"]}
        earlier = [r for r in read_test_by_epoch(record) if r["epoch"] < epoch]
        record.write_jsonl(TEST_BY_EPOCH, [*earlier, new])
        return new

    def catch_up(self, record: RunRecord) -> None:
        """On resume: a kill between the ``last`` checkpoint and its test row left that row
        out; the checkpoint still holds that epoch's weights, so score them now."""
        epoch = record.load_checkpoint("last")["epoch"]
        if all(r["epoch"] < epoch for r in read_test_by_epoch(record)):
            self.score_last(record, epoch)


# -- predict ------------------------------------------------------------------------------
def parse_operands(inputs: Sequence[Any], max_length: int) -> tuple[str, str]:
    """Two numbers as binary strings (most significant bit first); ints >= 0 are written
    in binary. An InputError for anything else."""
    check(max_length >= 1, "max_length", f"must be >= 1, got {max_length}")
    if len(inputs) != 2:
        raise InputError("addition runs take exactly two binary numbers (e.g. 1011 0110), "
                         f"got {len(inputs)}")
    texts = []
    for i, item in enumerate(inputs, start=1):
        if isinstance(item, int) and not isinstance(item, bool):
            if item < 0:
                raise InputError(f"number {i} is negative ({item}); give an int >= 0")
            item = format(item, "b")
        text = str(item)
        if not text:
            raise InputError(f"number {i} is empty; give a binary number such as 1011")
        if set(text) - {"0", "1"}:
            raise InputError(f"number {i} ({text[:40]!r}) is not binary: use only 0 and 1, "
                             "most significant bit first")
        if len(text) > max_length:
            raise InputError(f"number {i} has {len(text)} bits, more than `max_length` "
                             f"{max_length}; raise `max_length` to allow it")
        texts.append(text)
    return texts[0], texts[1]


def decimal(n: int) -> str:
    """``str(n)`` without Python's limit on digits for huge ints."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(n)
    finally:
        sys.set_int_max_str_digits(limit)


@torch.no_grad()
def add_with_model(model: nn.Module, first: str, second: str) -> dict:
    """The sum ``model`` computes for two binary strings (most significant bit first)."""
    steps = max(len(first), len(second)) + 1  # one more step for the carry out
    a, b = int(first, 2), int(second, 2)
    bits = [int_to_bits(a, steps), int_to_bits(b, steps)]
    x = torch.tensor(bits, dtype=torch.float32).T[None]  # (1, T, 2)
    bits = (model(x.to(device_of(model))) > 0)[0].long().tolist()  # (T,) least significant first
    predicted, true = bits_to_int(bits), a + b
    return {"inputs": [first, second], "decimal": [decimal(a), decimal(b)], "steps": steps,
            "model_sum": format(predicted, f"0{steps}b"), "model_sum_decimal": decimal(predicted),
            "true_sum": format(true, f"0{steps}b"), "true_sum_decimal": decimal(true),
            "correct": predicted == true, "wrong_bits": (predicted ^ true).bit_count()}


def sum_prediction(result: dict) -> Prediction:
    """The model's sum as the command line shows it: the two numbers, the model's sum and
    the true sum, in binary and decimal."""
    first, second = result["inputs"]
    verdict = ("right" if result["correct"]
               else f"wrong ({result['wrong_bits']} of {result['steps']} bits)")
    width = result["steps"]
    text = (f"  {first:>{width}}  {result['decimal'][0]}\n"
            f"+ {second:>{width}}  {result['decimal'][1]}\n"
            f"= {result['model_sum']}  {result['model_sum_decimal']}  (model: {verdict})\n"
            f"  {result['true_sum']}  {result['true_sum_decimal']}  (true sum)")
    return Prediction(int(result["model_sum"], 2), text, None, result)
