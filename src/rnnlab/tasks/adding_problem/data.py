"""The adding problem's data: the config, the seeded sequences, fresh batches, and the
squared-error objective with its metrics.

A sequence of length T is T steps of 2 features (value ~ U[0, 1], marker in {0, 1});
exactly one marker is 1 in each half (steps 0..T//2-1 and T//2..T-1); the target is
the sum of the two marked values. Every sequence has length T: nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnlab.core.errors import check
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting
from rnnlab.core.train import Batch, BatchResult, GeneratedBatches

FEATURES = 2  # (value, marker) per step
LONGEST = 100_000  # longest T a config may name: keeps a typo from allocating gigabytes
CLOSE = 0.04  # a sequence counts as right ("accuracy") when its squared error is below this
BASELINE_ANSWER = 1.0  # the memoryless answer: the mean of the target; its MSE is 1/6
SEEDS = "rnnlab-adding"  # the namespace of this task's random streams (core.seeding)


@dataclass(frozen=True)
class AddingConfig:
    length: int = setting(200, "time steps T per sequence (one marker in each half)",
                          metavar="T")
    train_size: int = setting(6_400, "training sequences per epoch, new ones every epoch",
                              metavar="N")
    valid_size: int = setting(1_000, "validation sequences", metavar="N")
    test_size: int = setting(10_000, "test sequences", metavar="N")

    def __post_init__(self) -> None:
        check(2 <= self.length <= LONGEST, "length",
              f"must be in 2..{LONGEST} (one marker in each half), got {self.length}")
        for name in ("train_size", "valid_size", "test_size"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")


@dataclass
class AddingSet:
    """Generated sequences: the values, the two marked positions and the sums."""

    values: Tensor  # (N, T) float in [0, 1)
    marked: Tensor  # (N, 2) int64: the marked step in the first half, then in the second
    y: Tensor  # (N,) float: values[marked[:, 0]] + values[marked[:, 1]]

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, index: slice) -> Batch:
        return Batch(encode(self.values[index], self.marked[index]), self.y[index])

    def in_order(self, batch_size: int) -> list[Batch]:
        """The set in batches (inputs encoded as each batch is made: T can be long)."""
        return [self.batch(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)]


def encode(values: Tensor, marked: Tensor) -> Tensor:
    """(N, T) values and (N, 2) marked steps -> the (N, T, 2) input (value, marker)."""
    markers = torch.zeros_like(values).scatter_(1, marked, 1.0)  # (N, T) one 1 per half
    return torch.stack([values, markers], dim=-1)  # (N, T, F=2)


def generate(n: int, length: int, generator: torch.Generator) -> AddingSet:
    """``n`` sequences of ``length`` steps, vectorised (no Python per sequence)."""
    half = length // 2
    values = torch.rand(n, length, generator=generator)
    first = torch.randint(0, half, (n,), generator=generator)
    second = half + torch.randint(0, length - half, (n,), generator=generator)
    marked = torch.stack([first, second], dim=1)  # (N, 2)
    return AddingSet(values, marked, values.gather(1, marked).sum(dim=1))


def make_set(cfg: AddingConfig, seed: int, stream: str, size: int) -> AddingSet:
    return generate(size, cfg.length, stream_generator(SEEDS, seed, stream))


class FreshBatches(GeneratedBatches):
    """New sequences of ``length`` steps every epoch, seeded by (seed, epoch)."""

    def __init__(self, length: int, sequences: int, batch_size: int, seed: int):
        def make(count: int, generator: torch.Generator) -> Batch:
            return generate(count, length, generator).batch(slice(None))

        super().__init__(make, sequences, batch_size, seed, SEEDS)


@dataclass
class AddingSplits:
    valid: AddingSet
    test: AddingSet


def make_splits(cfg: AddingConfig, seed: int) -> AddingSplits:
    """The fixed validation and test sets (training data is drawn fresh every epoch)."""
    return AddingSplits(make_set(cfg, seed, "valid", cfg.valid_size),
                        make_set(cfg, seed, "test", cfg.test_size))


# -- objective and metrics ------------------------------------------------------------
class SquaredErrorObjective:
    """The mean squared error of the model's one output per sequence. An item is a
    sequence; it counts as correct when its squared error is below ``CLOSE`` (0.04, an
    answer within 0.2 of the sum), so the metrics' "accuracy" is that fraction."""

    def __call__(self, output: Tensor, batch: Batch) -> BatchResult:  # output (B, 1)
        error = (output.squeeze(-1) - batch.y) ** 2  # (B,)
        return BatchResult(error.mean(), len(batch), int((error.detach() < CLOSE).sum()))


def baseline_mse(targets: Tensor) -> float:
    """The squared error of always answering 1.0 (the target's mean): 1/6 in expectation."""
    return float(((targets - BASELINE_ANSWER) ** 2).mean())

