"""Binary addition's data: the config, the pairs and their sums (checked against
Python ints in the tests), fresh batches, the masked bit objective and its metrics.

A pair of length L is L steps of 2 features (bit i of N1, bit i of N2), with N1
and N2 uniform in [0, 2^(L-1)) so the sum fits in L bits; the target is the L
bits of the sum, least significant first. Batches of mixed lengths are padded
with zeros and the padding is never scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.devices import device_of
from rnnlab.core.errors import ConfigError, check, check_choice
from rnnlab.core.records import RunRecord
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting
from rnnlab.core.train import Batch, BatchResult, TensorDataset

# multiclass-ce: the reference's flawed loss, kept for its ablation
LOSSES = ("mse", "bce", "multiclass-ce")
DATA_SOURCES = ("reference", "fresh")
TRAIN_BITS = ("uniform", "varied")
BATCHING = ("mixed", "by-length")
LONGEST = 100_000  # longest length a spec may name: keeps a typo from allocating gigabytes
REFERENCE_TEST_LENGTHS = "1-20"  # the exercise's test set: L uniform in 1..20
TEST_BY_EPOCH = "test_by_epoch.jsonl"  # one of records.RUN_OUTPUTS
SEEDS = "rnnlab-addition"  # the namespace of this task's random streams (core.seeding)


# -- lengths ------------------------------------------------------------------------
def parse_lengths(spec: str, option: str = "lengths") -> tuple[int, ...]:
    """``"1-20,50,100"`` -> (1, 2, ..., 20, 50, 100): sorted, without repeats.

    Raises a :class:`ConfigError` naming the setting ``option`` for anything else.
    """
    lengths: set[int] = set()
    parts = [p.strip() for p in str(spec).split(",")]
    if not any(parts):
        raise ConfigError(option, "is empty; give a length (5), a range (1-20) or a list (1-20,50)")
    for part in parts:
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise ConfigError(option, f"{part[:40]!r} is not a length or a range like 1-20")
        low, high = int(bounds[0]), int(bounds[-1])
        if low < 1 or high > LONGEST:
            raise ConfigError(option, f"must be in 1..{LONGEST}, got {part[:40]!r}")
        if low > high:
            raise ConfigError(option, f"range {part[:40]!r} runs backwards; write {high}-{low}")
        lengths.update(range(low, high + 1))
    return tuple(sorted(lengths))


def format_lengths(lengths: Sequence[int]) -> str:
    """The shortest spec for ``lengths``: (1, ..., 20, 50) -> ``"1-20,50"``."""
    runs: list[list[int]] = []
    for n in sorted(set(lengths)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# -- the task -----------------------------------------------------------------------
def add_bits(a: Tensor, b: Tensor) -> Tensor:
    """Bits of a + b, for (N, T) 0/1 tensors least significant bit first.

    A ripple-carry adder: a loop over time, vectorised over the batch, so numbers
    of any length work; the carry out of the last step is dropped.
    """
    out = torch.empty_like(a)
    carry = torch.zeros_like(a[:, 0])
    for t in range(a.shape[1]):
        total = a[:, t] + b[:, t] + carry  # (N,) in 0..3
        out[:, t] = total & 1
        carry = total >> 1
    return out


def bits_to_int(bits: Sequence[int]) -> int:
    """Least significant bit first -> Python int (any size)."""
    return sum(1 << i for i, bit in enumerate(bits) if bit)


def int_to_bits(n: int, length: int) -> list[int]:
    """Python int -> ``length`` bits, least significant first."""
    return [(n >> i) & 1 for i in range(length)]


class BinaryPairs:
    """Pairs of binary numbers and their sum, one bit per time step.

    Encoding of one pair of length L:

    - N1 and N2 are uniform in [0, 2^(L-1)): bits 0..L-2 are fair coin flips and
      bit L-1 is 0, so the sum S = N1 + N2 < 2^L fits in L bits (L = 1 gives 0 + 0);
    - input ``x`` (L, F=2): step i holds (bit i of N1, bit i of N2), least
      significant bit first;
    - target ``y`` (L,): bit i of S, least significant first, as floats 0/1.

    Pairs of mixed lengths are zero-padded to the longest one; ``lengths`` (N,)
    says where each pair ends, and :class:`BitObjective` scores only positions
    before it. Bits are drawn directly (no int64 anywhere), so any length works.

    Every set comes from the task's own ``torch.Generator`` seeded from
    (seed, stream name), so the same seed gives the same pairs on any machine
    and thread count, and one stream never shifts another.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def generator(self, stream: str) -> torch.Generator:
        return stream_generator(SEEDS, self.seed, stream, digest="blake2b")

    @staticmethod
    def pairs(lengths: Tensor, generator: torch.Generator, varied: bool = False) -> TensorDataset:
        """One random pair per entry of ``lengths`` (N,), padded to the longest.

        ``varied`` (training only): each pair draws its own share q ~ U(0, 1) of
        positions where the bits differ (a carry propagates) instead of the uniform
        pairs' 1/2, so long carry chains and long runs of equal bits are common.
        """
        count, longest = lengths.shape[0], int(lengths.max())
        if varied:
            first = torch.randint(0, 2, (count, longest), generator=generator, dtype=torch.uint8)
            share = torch.rand(count, 1, generator=generator)  # (N, 1) q of each pair
            differ = (torch.rand(count, longest, generator=generator) < share).to(torch.uint8)
            bits = torch.stack([first, first ^ differ], dim=-1)  # (N, T, 2)
        else:
            bits = torch.randint(0, 2, (count, longest, 2), generator=generator, dtype=torch.uint8)
        # (N, T) True for the bits below the top one
        free = torch.arange(longest)[None, :] < (lengths - 1)[:, None]
        bits = bits * free[:, :, None]  # top bit and padding are 0
        total = add_bits(bits[:, :, 0], bits[:, :, 1])  # (N, T), zero past each length
        return TensorDataset(bits.float(), total.float(), lengths.clone())

    def sample(self, count: int, lengths: Sequence[int], stream: str | torch.Generator,
               varied: bool = False) -> TensorDataset:
        """``count`` pairs, each length drawn uniformly from ``lengths``."""
        generator = self.generator(stream) if isinstance(stream, str) else stream
        choices = torch.tensor(sorted(set(lengths)), dtype=torch.long)
        drawn = choices[torch.randint(0, len(choices), (count,), generator=generator)]
        return self.pairs(drawn, generator, varied)

    def fixed(self, count: int, length: int) -> TensorDataset:
        """``count`` pairs of exactly ``length`` steps: the scoring set for that length."""
        return self.sample(count, [length], f"eval/{length}")


class FreshBatches:
    """New pairs every epoch: ``pairs_per_epoch`` pairs in batches of ``batch_size``,
    drawn from the task's generator for (seed, epoch), so an epoch can be replayed.

    ``by_length``: each batch draws one length (uniformly from ``lengths``) for all
    its pairs, so it needs no padding and no packing; lengths are distributed as
    with mixed batches, and the steps run faster.
    """

    def __init__(self, task: BinaryPairs, lengths: Sequence[int], pairs_per_epoch: int,
                 batch_size: int, varied: bool = False, noise: float = 0.0,
                 by_length: bool = False):
        self.task, self.lengths, self.varied, self.noise = task, tuple(lengths), varied, noise
        self.pairs_per_epoch, self.batch_size = pairs_per_epoch, batch_size
        self.by_length = by_length

    def num_batches(self) -> int:
        return math.ceil(self.pairs_per_epoch / self.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        generator = self.task.generator(f"fresh/{epoch}")
        for start in range(0, self.pairs_per_epoch, self.batch_size):
            count = min(self.batch_size, self.pairs_per_epoch - start)
            lengths = self.lengths
            if self.by_length:
                pick = int(torch.randint(0, len(self.lengths), (1,), generator=generator))
                lengths = [self.lengths[pick]]
            data = self.task.sample(count, lengths, generator, self.varied)
            yield add_noise(full_length_batch(data.x, data.y, data.lengths), generator, self.noise)


def add_noise(batch: Batch, generator: torch.Generator, std: float) -> Batch:
    """Gaussian noise of ``std`` on the input bits (padding stays zero); none for 0."""
    if std == 0:
        return batch
    noise = std * torch.randn(batch.x.shape, generator=generator)
    if batch.lengths is not None:
        noise = noise * step_mask(batch)[:, :, None]
    return Batch(batch.x + noise, batch.y, batch.lengths)


def full_length_batch(x: Tensor, y: Tensor, lengths: Tensor) -> Batch:
    """A batch; ``lengths`` dropped when every pair fills it (no packing needed)."""
    return Batch(x, y, None if bool((lengths == x.shape[1]).all()) else lengths)


# -- objective and metrics ------------------------------------------------------------
def step_mask(batch: Batch) -> Tensor:
    """(B, T) True at scored positions: before each pair's length."""
    steps, device = batch.y.shape[1], batch.y.device
    if batch.lengths is None:
        return torch.ones(batch.y.shape, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device)[None, :] < batch.lengths.to(device)[:, None]


class BitObjective:
    """One bit per step, padding masked out. ``mse``: squared error of the sigmoid (the
    reference's loss); ``bce``: binary cross-entropy on the logits. An item is a scored
    bit; it is right when the sigmoid is on the target's side of 0.5.

    ``multiclass-ce`` reproduces the reference's flawed "cross-entropy", kept only to
    measure the flaw: the sigmoid outputs of a pair's L steps are read as the logits
    of one L-way softmax, and the bits as (unnormalised) class probabilities; its
    loss is the mean over pairs of -sum_t y_t log softmax_t(sigmoid(z)).
    """

    def __init__(self, loss: str = "bce"):
        check_choice("loss", loss, LOSSES)
        self.loss = loss

    def __call__(self, logits: Tensor, batch: Batch) -> BatchResult:  # logits (B, T)
        mask = step_mask(batch)
        items = int(mask.sum())
        if self.loss == "multiclass-ce":
            # a softmax over each pair's steps
            scores = torch.where(mask, torch.sigmoid(logits), -torch.inf)
            log_p = torch.where(mask, torch.log_softmax(scores, dim=1), 0.0)
            loss = -(batch.y * log_p).sum() / len(batch)
        else:
            if self.loss == "bce":
                per_bit = F.binary_cross_entropy_with_logits(logits, batch.y, reduction="none")
            else:
                per_bit = (torch.sigmoid(logits) - batch.y) ** 2
            loss = torch.where(mask, per_bit, 0.0).sum() / max(items, 1)
        correct = int((((logits > 0) == (batch.y > 0.5)) & mask).sum())
        return BatchResult(loss, items, correct)


@torch.no_grad()
def score(model: nn.Module, batches: Sequence[Batch], objective: BitObjective) -> dict:
    """Loss, bit accuracy and whole-number accuracy (every bit of a pair right)."""
    model.eval()
    loss_sum, bits, right_bits, pairs, right_pairs = 0.0, 0, 0, 0, 0
    device = device_of(model)
    for batch in (b.to(device) for b in batches):
        logits = model(batch.x, batch.lengths)  # (B, T)
        result = objective(logits, batch)
        wrong = ((logits > 0) != (batch.y > 0.5)) & step_mask(batch)
        loss_sum += float(result.loss) * result.items
        bits, right_bits = bits + result.items, right_bits + result.correct
        pairs, right_pairs = pairs + len(batch), right_pairs + int((~wrong.any(dim=1)).sum())
    return {"loss": loss_sum / max(bits, 1), "bit_accuracy": right_bits / max(bits, 1),
            "number_accuracy": right_pairs / max(pairs, 1), "pairs": pairs, "bits": bits}


def in_batches(data: TensorDataset, batch_size: int) -> list[Batch]:
    return [full_length_batch(b.x, b.y, b.lengths) for b in data.in_order(batch_size)]


def score_by_length(model: nn.Module, task: BinaryPairs, lengths: Sequence[int], pairs: int,
                    objective: BitObjective, batch_size: int) -> list[dict]:
    """One row per length: ``pairs`` pairs of exactly that length, scored."""
    rows = []
    for length in lengths:
        stats = score(model, in_batches(task.fixed(pairs, length), batch_size), objective)
        rows.append({"length": length, **stats})
    return rows


# -- configuration --------------------------------------------------------------------
@dataclass(frozen=True)
class AdditionConfig:
    loss: str = setting("mse", "mse: squared error of the sigmoid (the reference); bce: binary "
                        "cross-entropy on the logits; multiclass-ce: the reference's flawed "
                        "\"cross-entropy\" (a softmax across time), only to measure that flaw",
                        choices=LOSSES)
    data: str = setting("reference", "reference: one fixed training set; fresh: new pairs every "
                        "epoch", choices=DATA_SOURCES)
    train_lengths: str = setting("1-20", "training lengths: a range (1-20), one length (5) or a "
                                 "list (3,5,10)", metavar="SPEC")
    train_size: int = setting(250, "training pairs per epoch", metavar="N")
    test_pairs: int = setting(100, "pairs in the test set scored every epoch (L uniform in "
                              "1..20) and in the validation set (training lengths)", metavar="N")
    eval_lengths: str = setting("1-20", "lengths scored after training, e.g. 1-20,50,100,1000",
                                metavar="SPEC")
    eval_pairs: int = setting(100, "pairs scored for each eval length", metavar="N")
    train_bits: str = setting("uniform", "uniform: N1, N2 uniform as at test time; varied: each "
                              "training pair its own share of differing bit pairs, so long carry "
                              "chains are common", choices=TRAIN_BITS)
    train_noise: float = setting(0.0, "Gaussian noise added to the training inputs (0: none); "
                                 "it pushes the state to stable attractors", metavar="STD")
    batching: str = setting("mixed", "fresh data: mixed lengths in each batch, or one length per "
                            "batch (faster)", choices=BATCHING)

    def __post_init__(self) -> None:
        for name, choices in (("loss", LOSSES), ("train_bits", TRAIN_BITS),
                              ("data", DATA_SOURCES), ("batching", BATCHING)):
            check_choice(name, getattr(self, name), choices)
        check(self.batching != "by-length" or self.data == "fresh", "batching",
              "by-length needs fresh data (the reference set is one fixed set)")
        # canonical specs, so equal settings give equal configs (and resume matches)
        for name in ("train_lengths", "eval_lengths"):
            object.__setattr__(self, name, format_lengths(parse_lengths(getattr(self, name), name)))
        check(0.0 <= self.train_noise <= 10.0, "train_noise",
              f"must be in 0..10, got {self.train_noise}")
        for name in ("train_size", "test_pairs", "eval_pairs"):
            value = getattr(self, name)
            check(1 <= value <= 10_000_000, name, f"must be in 1..10000000, got {value}")

    @property
    def train_length_list(self) -> tuple[int, ...]:
        return parse_lengths(self.train_lengths, "train_lengths")

    @property
    def eval_length_list(self) -> tuple[int, ...]:
        return parse_lengths(self.eval_lengths, "eval_lengths")

    def to_dict(self) -> dict:
        return asdict(self)


# -- one run ----------------------------------------------------------------------------
@dataclass
class AdditionSets:
    task: BinaryPairs
    train: TensorDataset | None  # the reference's fixed set; None for fresh data
    valid: TensorDataset  # training lengths; picks the best epoch
    test: TensorDataset  # L uniform in 1..20, as the exercise's test set


def build_sets(cfg: AdditionConfig, seed: int) -> AdditionSets:
    task, varied = BinaryPairs(seed), cfg.train_bits == "varied"
    train = (task.sample(cfg.train_size, cfg.train_length_list, "train", varied)
             if cfg.data == "reference" else None)
    valid = task.sample(cfg.test_pairs, cfg.train_length_list, "valid", varied)
    test = task.sample(cfg.test_pairs, parse_lengths(REFERENCE_TEST_LENGTHS), "test")
    return AdditionSets(task, train, valid, test)


def read_test_by_epoch(record: RunRecord) -> list[dict]:
    return record.read_jsonl(TEST_BY_EPOCH)
