"""Recall's data: the config, the digit sequences and their seeded sets.

A sample is a sequence of L random digits 0-9 (L uniform in min_length..max_length),
one-hot encoded: 10 features per step. The label is the digit at zero-based position K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.errors import check, check_choice
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting
from rnnlab.core.train import Batch, GeneratedBatches, TensorDataset

DIGITS = 10  # classes and one-hot features per step
DATA_MODES = ("reference", "fresh")
MAX_SEQUENCE_LENGTH = 1000  # generated sets are held whole as (N, T, 10) floats
# (train sequences per epoch, valid, test) when a size is not given
DEFAULT_SIZES = {"reference": (800, 100, 100), "fresh": (20_000, 2_000, 10_000)}
SIZE_NAMES = ("train_size", "valid_size", "test_size")
SEEDS = "rnnlab-recall"  # the namespace of this task's random streams (core.seeding)


@dataclass(frozen=True)
class RecallConfig:
    k: int = setting(1, "zero-based position of the digit to recall")
    min_length: int = setting(3, "shortest sequence")
    max_length: int = setting(10, "longest sequence")
    data: str = setting("reference", "reference: the exercise's fixed sets; fresh: new training "
                        "sequences every epoch", choices=DATA_MODES)
    # None: the data mode's default (DEFAULT_SIZES); stored resolved
    train_size: int | None = setting(None, "training sequences per epoch (default by data mode, "
                                     "train/valid/test: " + ", ".join(
                                         f"{m} {t}/{v}/{s}" for m, (t, v, s) in
                                         DEFAULT_SIZES.items()) + ")", kind=int)
    valid_size: int | None = setting(None, "validation sequences", kind=int)
    test_size: int | None = setting(None, "test sequences", kind=int)

    def __post_init__(self) -> None:
        check_choice("data", self.data, DATA_MODES)
        for name, default in zip(SIZE_NAMES, DEFAULT_SIZES[self.data], strict=True):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check(self.min_length >= 1, "min_length", f"must be >= 1, got {self.min_length}")
        check(self.min_length <= self.max_length, "min_length",
              f"({self.min_length}) must be <= max_length ({self.max_length})")
        check(self.max_length <= MAX_SEQUENCE_LENGTH, "max_length",
              f"must be <= {MAX_SEQUENCE_LENGTH}, got {self.max_length}")
        check(self.k >= 0, "k", f"must be >= 0 (positions are zero-based), got {self.k}")
        check(self.k < self.min_length, "k",
              f"({self.k}) is not a position of every sequence: it must be < min_length "
              f"({self.min_length}), positions being zero-based")


@dataclass
class RecallSet:
    """Generated sequences: inputs, labels, lengths and the digits themselves."""

    x: Tensor  # (N, T, 10) one-hot, zero past each length
    y: Tensor  # (N,) the digit at position K
    lengths: Tensor  # (N,) int64
    digits: Tensor  # (N, T) int64, -1 past each length

    def __len__(self) -> int:
        return self.x.shape[0]

    def dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y, self.lengths)

    def sequences(self, index: Sequence[int] | None = None) -> list[list[int]]:
        rows = range(len(self)) if index is None else index
        return [self.digits[i, : int(self.lengths[i])].tolist() for i in rows]

    def head(self, n: int) -> RecallSet:
        return RecallSet(self.x[:n], self.y[:n], self.lengths[:n], self.digits[:n])


class DigitSequences:
    """Random digit sequences and the digit at position K.

    Encoding: a sequence of L digits (L uniform in [min_length, max_length]) is a
    (L, 10) one-hot tensor, one step per digit. A set of N sequences is held as
    ``x`` (N, T=max_length, 10) with all-zero rows after each sequence's end, plus
    ``lengths`` (N,); models pack the batch with the lengths, so padding never
    reaches the recurrence and each sequence is read at its true last step.
    Scored: one label per sequence, ``y`` = the digit at zero-based position K
    (K < min_length, so every sequence has one). Every set comes from its own
    ``torch.Generator`` seeded from (seed, stream name): the same seed gives the
    same tensors on every machine. Generation is vectorised (no Python per sample).
    """

    def __init__(self, k: int = 1, min_length: int = 3, max_length: int = 10):
        RecallConfig(k=k, min_length=min_length, max_length=max_length)  # validates
        self.k, self.min_length, self.max_length = k, min_length, max_length

    @classmethod
    def from_config(cls, cfg: RecallConfig) -> DigitSequences:
        return cls(cfg.k, cfg.min_length, cfg.max_length)

    @property
    def num_lengths(self) -> int:
        return self.max_length - self.min_length + 1

    def random_lengths(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(self.min_length, self.max_length + 1, (n,), generator=generator)

    def cycled_lengths(self, n: int) -> Tensor:
        """min..max, min..max, ...: the reference's rounds of one sequence of each length."""
        return self.min_length + torch.arange(n) % self.num_lengths

    def generate(self, n: int, generator: torch.Generator,
                 lengths: Tensor | None = None) -> RecallSet:
        """``n`` sequences (random lengths unless ``lengths`` is given), trimmed to the longest."""
        if lengths is None:
            lengths = self.random_lengths(n, generator)
        longest = int(lengths.max())
        digits = torch.randint(0, DIGITS, (n, self.max_length), generator=generator)[:, :longest]
        inside = torch.arange(longest) < lengths[:, None]  # (N, T) True within each sequence
        x = F.one_hot(digits, DIGITS).float() * inside[..., None]  # (N, T, 10) zero padding
        return RecallSet(x, digits[:, self.k].clone(), lengths, digits.masked_fill(~inside, -1))

    def batch(self, n: int, generator: torch.Generator) -> Batch:
        s = self.generate(n, generator)
        return Batch(s.x, s.y, s.lengths)

    def encode(self, digits: Sequence[int]) -> Tensor:
        """One sequence as a (1, L, 10) one-hot batch."""
        return F.one_hot(torch.tensor([list(digits)]), DIGITS).float()


def decode(x: Tensor, lengths: Tensor) -> list[list[int]]:
    """The digits of one-hot sequences (the inverse of the encoding), for checks."""
    return [x[i, : int(n)].argmax(dim=-1).tolist() for i, n in enumerate(lengths)]


class FreshBatches(GeneratedBatches):
    """Training batches of new sequences every epoch, seeded by (seed, epoch)."""

    def __init__(self, task: DigitSequences, sequences: int, batch_size: int, seed: int):
        super().__init__(task.batch, sequences, batch_size, seed, SEEDS)


@dataclass
class RecallSplits:
    train: RecallSet | None  # None in fresh mode: training data is generated per epoch
    valid: RecallSet
    test: RecallSet


def make_splits(cfg: RecallConfig, seed: int, with_train: bool = True) -> RecallSplits:
    task = DigitSequences.from_config(cfg)
    train = None
    if cfg.data == "reference" and with_train:
        train = task.generate(cfg.train_size, stream_generator(SEEDS, seed, "train"),
                              task.cycled_lengths(cfg.train_size))
    valid = task.generate(cfg.valid_size, stream_generator(SEEDS, seed, "valid"))
    test = task.generate(cfg.test_size, stream_generator(SEEDS, seed, "test"))
    return RecallSplits(train, valid, test)
