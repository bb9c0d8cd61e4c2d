"""The copy-memory task's data: the config, the seeded sequences, fresh batches, and the
per-step cross-entropy objective with its metrics.

Classes: 0 the blank, 1..8 the symbols, 9 the marker. A sequence with delay T is T + 20
steps: 10 symbols, T - 1 blanks, the marker, 10 blanks (Arjovsky et al. 2016). The target
is T + 10 blanks, then the 10 symbols. Every sequence has T + 20 steps: nothing is padded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.errors import check
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting
from rnnlab.core.train import Batch, BatchResult, GeneratedBatches

CLASSES = 10  # blank, 8 symbols, marker: the one-hot features and the output classes
BLANK, MARKER = 0, 9
ALPHABET = 8  # symbols 1..8
COPIED = 10  # symbols to remember and reproduce
LONGEST = 100_000  # longest delay a config may name: keeps a typo from allocating gigabytes
SEEDS = "rnnlab-copy"  # the namespace of this task's random streams (core.seeding)


@dataclass(frozen=True)
class CopyConfig:
    delay: int = setting(100, "delay T: the sequence is T + 20 steps (10 symbols, T - 1 blanks, "
                         "the marker, 10 blanks)", metavar="T")
    train_size: int = setting(6_400, "training sequences per epoch, new ones every epoch",
                              metavar="N")
    valid_size: int = setting(1_000, "validation sequences", metavar="N")
    test_size: int = setting(10_000, "test sequences", metavar="N")

    def __post_init__(self) -> None:
        check(1 <= self.delay <= LONGEST, "delay", f"must be in 1..{LONGEST}, got {self.delay}")
        for name in ("train_size", "valid_size", "test_size"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")

    @property
    def steps(self) -> int:
        return self.delay + 2 * COPIED


def layout(symbols: Tensor, delay: int) -> tuple[Tensor, Tensor]:
    """(N, 10) symbols -> the (N, T+20) input classes and the (N, T+20) target classes."""
    n = symbols.shape[0]
    blanks = torch.full((n, delay - 1), BLANK, dtype=torch.long)
    marker = torch.full((n, 1), MARKER, dtype=torch.long)
    tail = torch.full((n, COPIED), BLANK, dtype=torch.long)
    inputs = torch.cat([symbols, blanks, marker, tail], dim=1)  # (N, T+20)
    targets = torch.cat([torch.full((n, delay + COPIED), BLANK, dtype=torch.long), symbols],
                        dim=1)  # (N, T+20)
    return inputs, targets


def encode(symbols: Tensor, delay: int) -> Batch:
    """A batch: one-hot inputs (N, T+20, 10) and per-step target classes (N, T+20)."""
    inputs, targets = layout(symbols, delay)
    return Batch(F.one_hot(inputs, CLASSES).float(), targets)


def draw_symbols(n: int, generator: torch.Generator) -> Tensor:
    """(N, 10) symbols uniform in 1..8, vectorised."""
    return torch.randint(1, ALPHABET + 1, (n, COPIED), generator=generator)


@dataclass
class CopySet:
    """Generated sequences, held as their 10 symbols (a batch is encoded when made)."""

    symbols: Tensor  # (N, 10) int64 in 1..8
    delay: int

    def __len__(self) -> int:
        return self.symbols.shape[0]

    def in_order(self, batch_size: int) -> EncodedBatches:
        return EncodedBatches(self, batch_size)


class EncodedBatches(Sequence[Batch]):
    """A set's batches, each encoded when it is read: (T + 20) * 10 floats per sequence
    would be a lot to hold for a whole set at a long delay."""

    def __init__(self, data: CopySet, batch_size: int):
        self.data, self.batch_size = data, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __getitem__(self, i: int) -> Batch:  # type: ignore[override]  (no slices)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.batch_size
        return encode(self.data.symbols[start : start + self.batch_size], self.data.delay)


class FreshBatches(GeneratedBatches):
    """New sequences with ``delay`` blanks every epoch, seeded by (seed, epoch)."""

    def __init__(self, delay: int, sequences: int, batch_size: int, seed: int):
        def make(count: int, generator: torch.Generator) -> Batch:
            return encode(draw_symbols(count, generator), delay)

        super().__init__(make, sequences, batch_size, seed, SEEDS)


@dataclass
class CopySplits:
    valid: CopySet
    test: CopySet


def make_splits(cfg: CopyConfig, seed: int) -> CopySplits:
    """The fixed validation and test sets (training data is drawn fresh every epoch)."""
    return CopySplits(*(CopySet(draw_symbols(size, stream_generator(SEEDS, seed, name)),
                                cfg.delay)
                        for name, size in (("valid", cfg.valid_size), ("test", cfg.test_size))))


# -- objective and metrics ------------------------------------------------------------
class CopyObjective:
    """Cross-entropy over every one of the T + 20 steps (the paper's loss, whose memoryless
    baseline is 10 log 8 / (T + 20)); an item is a recalled symbol (the last 10 steps),
    right when its arg-max is the symbol. The loss is the mean over all steps of the batch."""

    def __call__(self, logits: Tensor, batch: Batch) -> BatchResult:  # logits (B, T+20, 10)
        loss = F.cross_entropy(logits.reshape(-1, CLASSES), batch.y.reshape(-1))
        right = recalled_right(logits, batch.y)  # (B, 10)
        return BatchResult(loss, right.numel(), int(right.sum()))


def recalled_right(logits: Tensor, targets: Tensor) -> Tensor:
    """(B, 10) True where the arg-max of a recalled step is its symbol."""
    return logits[:, -COPIED:].argmax(dim=-1) == targets[:, -COPIED:]


def baseline_loss(delay: int) -> float:
    """The memoryless strategy's loss: blanks surely right, then a uniform guess among 8
    symbols for the 10 recalled steps, averaged over T + 20 steps: 10 log 8 / (T + 20)."""
    return COPIED * math.log(ALPHABET) / (delay + 2 * COPIED)
