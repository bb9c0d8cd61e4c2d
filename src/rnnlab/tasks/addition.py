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

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig
from rnnlab.cli.options import (
    add_model_options,
    add_optim_options,
    add_output_options,
    model_config_from_args,
    train_config_from_args,
)
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, TaskData, execute_run, load_model
from rnnlab.tasks import draw_run_figures
from rnnlab.core.train import (
    Batch,
    BatchResult,
    ShuffledBatches,
    TensorDataset,
    TrainConfig,
    configure_threads,
)

NAME = "addition"
LOSSES = ("mse", "bce", "multiclass-ce")  # multiclass-ce: the reference's flawed loss, for ablations
DATA_SOURCES = ("reference", "fresh")
TRAIN_BITS = ("uniform", "varied")
BATCHING = ("mixed", "by-length")
LONGEST = 100_000  # longest length a spec may name: keeps a typo from allocating gigabytes
REFERENCE_TEST_LENGTHS = "1-20"  # the exercise's test set: L uniform in 1..20
TEST_BY_EPOCH = "test_by_epoch.jsonl"  # one of records.RUN_OUTPUTS


# -- lengths ------------------------------------------------------------------------
def parse_lengths(spec: str, option: str = "lengths") -> tuple[int, ...]:
    """``"1-20,50,100"`` -> (1, 2, ..., 20, 50, 100): sorted, without repeats.

    Raises a one-line :class:`UserError` naming ``option`` for anything else.
    """
    lengths: set[int] = set()
    parts = [p.strip() for p in str(spec).split(",")]
    if not any(parts):
        raise UserError(f"{option} is empty; give a length (5), a range (1-20) or a list (1-20,50)")
    for part in parts:
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise UserError(f"{option}: {part[:40]!r} is not a length or a range like 1-20")
        low, high = int(bounds[0]), int(bounds[-1])
        if low < 1 or high > LONGEST:
            raise UserError(f"{option}: lengths must be in 1..{LONGEST}, got {part[:40]!r}")
        if low > high:
            raise UserError(f"{option}: range {part[:40]!r} runs backwards; write {high}-{low}")
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


class BinaryAdditionTask:
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
        digest = hashlib.blake2b(f"rnnlab-addition/{self.seed}/{stream}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)

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
        free = torch.arange(longest)[None, :] < (lengths - 1)[:, None]  # (N, T) bits below the top one
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

    def __init__(self, task: BinaryAdditionTask, lengths: Sequence[int], pairs_per_epoch: int,
                 batch_size: int, varied: bool = False, noise: float = 0.0, by_length: bool = False):
        self.task, self.lengths, self.varied, self.noise = task, tuple(lengths), varied, noise
        self.pairs_per_epoch, self.batch_size, self.by_length = pairs_per_epoch, batch_size, by_length

    def num_batches(self) -> int:
        return math.ceil(self.pairs_per_epoch / self.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        generator = self.task.generator(f"fresh/{epoch}")
        for start in range(0, self.pairs_per_epoch, self.batch_size):
            count = min(self.batch_size, self.pairs_per_epoch - start)
            lengths = self.lengths
            if self.by_length:
                lengths = [self.lengths[int(torch.randint(0, len(self.lengths), (1,), generator=generator))]]
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
    steps = batch.y.shape[1]
    if batch.lengths is None:
        return torch.ones(batch.y.shape, dtype=torch.bool)
    return torch.arange(steps)[None, :] < batch.lengths[:, None]


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
        if loss not in LOSSES:
            raise UserError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        self.loss = loss

    def __call__(self, logits: Tensor, batch: Batch) -> BatchResult:  # logits (B, T)
        mask = step_mask(batch)
        items = int(mask.sum())
        if self.loss == "multiclass-ce":
            scores = torch.where(mask, torch.sigmoid(logits), -torch.inf)  # softmax over each pair's steps
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
    for batch in batches:
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


def score_by_length(model: nn.Module, task: BinaryAdditionTask, lengths: Sequence[int], pairs: int,
                    objective: BitObjective, batch_size: int) -> list[dict]:
    """One row per length: ``pairs`` pairs of exactly that length, scored."""
    rows = []
    for length in lengths:
        stats = score(model, in_batches(task.fixed(pairs, length), batch_size), objective)
        rows.append({"length": length, **stats})
    return rows


# -- configuration --------------------------------------------------------------------
@dataclass(frozen=True)
class AdditionTaskConfig:
    loss: str = "mse"  # the reference's loss (on the sigmoid); bce is the right one for bits
    data: str = "reference"  # reference: one fixed set of train_size pairs; fresh: new pairs each epoch
    train_lengths: str = "1-20"  # spec: a range, one length or a list; drawn uniformly
    train_size: int = 250  # training pairs per epoch (the reference's set has 250)
    test_pairs: int = 100  # the test set by epoch (L uniform in 1..20) and the validation set
    eval_lengths: str = "1-20"  # lengths scored after training
    eval_pairs: int = 100  # pairs per scored length (the reference: 100 for each L = 1..20)
    train_bits: str = "uniform"  # varied: training pairs with long carry chains too (see pairs)
    train_noise: float = 0.0  # std of Gaussian noise on training inputs: pushes the state to stable attractors
    batching: str = "mixed"  # fresh data: mixed lengths in a batch (packed), or by-length (one per batch)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.train_bits not in TRAIN_BITS:
            raise UserError(f"unknown train-bits {self.train_bits!r}; choose one of {', '.join(TRAIN_BITS)}")
        if self.data not in DATA_SOURCES:
            raise UserError(f"unknown data {self.data!r}; choose one of {', '.join(DATA_SOURCES)}")
        if self.batching not in BATCHING:
            raise UserError(f"unknown batching {self.batching!r}; choose one of {', '.join(BATCHING)}")
        if self.batching == "by-length" and self.data != "fresh":
            raise UserError("batching by-length needs --data fresh (the reference set is one fixed set)")
        # canonical specs, so equal settings give equal configs (and --resume matches)
        object.__setattr__(self, "train_lengths", format_lengths(parse_lengths(self.train_lengths, "train-lengths")))
        object.__setattr__(self, "eval_lengths", format_lengths(parse_lengths(self.eval_lengths, "eval-lengths")))
        if not 0.0 <= self.train_noise <= 10.0:
            raise UserError(f"train-noise must be in 0..10, got {self.train_noise}")
        for name in ("train_size", "test_pairs", "eval_pairs"):
            if not 1 <= getattr(self, name) <= 10_000_000:
                raise UserError(f"{name.replace('_', '-')} must be in 1..10000000, got {getattr(self, name)}")

    @property
    def train_length_list(self) -> tuple[int, ...]:
        return parse_lengths(self.train_lengths, "train-lengths")

    @property
    def eval_length_list(self) -> tuple[int, ...]:
        return parse_lengths(self.eval_lengths, "eval-lengths")

    def to_dict(self) -> dict:
        return asdict(self)


REFERENCE_MODEL = ModelConfig(cell="lstm", input_size=2, hidden_size=5, num_outputs=1)
REFERENCE_TRAIN = TrainConfig(epochs=5, batch_size=1, lr=0.01, seed=2111)
REFERENCE_TASK = AdditionTaskConfig()
DRY_RUN = {"train_size": 64, "test_pairs": 20, "eval_pairs": 10}  # seconds, end to end


def dry_run_config(cfg: AdditionTaskConfig) -> AdditionTaskConfig:
    """``cfg`` with its sizes cut to ``DRY_RUN`` (never raised)."""
    return replace(cfg, **{k: min(v, getattr(cfg, k)) for k, v in DRY_RUN.items()})

# rnnlab's recipe: BCE, fresh batched data, trained on lengths up to 10 only.
# Input noise makes the carry a stable attractor of the state, which is what carries
# the model from 10 steps to 1,000 (without it, 1-3 of 3 seeds failed at L = 1000).
TUNED_MODEL = replace(REFERENCE_MODEL, hidden_size=16)
TUNED_TRAIN = TrainConfig(epochs=20, batch_size=64, lr=0.01, schedule="cosine", seed=2111)
TUNED_TASK = AdditionTaskConfig(loss="bce", data="fresh", train_lengths="1-10", train_size=6400,
                                train_noise=0.2, eval_lengths="1-20,100,1000", eval_pairs=1000)


# -- one run ----------------------------------------------------------------------------
@dataclass
class AdditionSets:
    task: BinaryAdditionTask
    train: TensorDataset | None  # the reference's fixed set; None for fresh data
    valid: TensorDataset  # training lengths; picks the best epoch
    test: TensorDataset  # L uniform in 1..20, as the exercise's test set


def build_sets(cfg: AdditionTaskConfig, seed: int) -> AdditionSets:
    task, varied = BinaryAdditionTask(seed), cfg.train_bits == "varied"
    train = (task.sample(cfg.train_size, cfg.train_length_list, "train", varied)
             if cfg.data == "reference" else None)
    return AdditionSets(task, train, task.sample(cfg.test_pairs, cfg.train_length_list, "valid", varied),
                        task.sample(cfg.test_pairs, parse_lengths(REFERENCE_TEST_LENGTHS), "test"))


def build_task_data(sets: AdditionSets, cfg: AdditionTaskConfig, train: TrainConfig) -> TaskData:
    if sets.train is not None:
        def transform(batch: Batch, generator: torch.Generator) -> Batch:
            return add_noise(batch, generator, cfg.train_noise)
        source = ShuffledBatches(sets.train, train.batch_size, train.seed,
                                 transform if cfg.train_noise else None)
    else:
        source = FreshBatches(sets.task, cfg.train_length_list, cfg.train_size, train.batch_size,
                              cfg.train_bits == "varied", cfg.train_noise, cfg.batching == "by-length")
    return TaskData(source, in_batches(sets.valid, train.eval_batch_size), BitObjective(cfg.loss))


def test_model(model: nn.Module, sets: AdditionSets, cfg: AdditionTaskConfig, batch_size: int) -> dict:
    """The summary's test dict: the exercise's test set, then every eval length."""
    objective = BitObjective(cfg.loss)
    overall = score(model, in_batches(sets.test, batch_size), objective)
    rows = score_by_length(model, sets.task, cfg.eval_length_list, cfg.eval_pairs, objective, batch_size)
    return {"loss": overall["loss"], "accuracy": overall["bit_accuracy"],
            "number_accuracy": overall["number_accuracy"], "pairs": overall["pairs"],
            "bit_accuracy_mean": sum(r["bit_accuracy"] for r in rows) / len(rows),
            "number_accuracy_mean": sum(r["number_accuracy"] for r in rows) / len(rows),
            "eval_lengths": cfg.eval_lengths, "pairs_per_length": cfg.eval_pairs, "by_length": rows}


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
        record.write_jsonl(TEST_BY_EPOCH, [r for r in read_test_by_epoch(record) if r["epoch"] < epoch] + [new])
        return new

    def catch_up(self, record: RunRecord) -> None:
        """On resume: a kill between the ``last`` checkpoint and its test row left that row
        out; the checkpoint still holds that epoch's weights, so score them now."""
        epoch = record.load_checkpoint("last")["epoch"]
        if all(r["epoch"] < epoch for r in read_test_by_epoch(record)):
            self.score_last(record, epoch)


def read_test_by_epoch(record: RunRecord) -> list[dict]:
    return record.read_jsonl(TEST_BY_EPOCH)


def train_plan(plan: RunPlan, *, data_dir: str | None = None, figures: bool = True,
               on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train one addition run from a plan (the CLI and ``rnnlab reproduce``); ``data_dir`` is unused.

    ``on_epoch`` receives fit's row plus ``test_loss``, ``test_accuracy`` and
    ``test_number_accuracy`` of that epoch.
    """
    cfg = AdditionTaskConfig(**plan.task_config)
    sets = build_sets(cfg, plan.train.seed)
    tester = EpochTester(plan.out, in_batches(sets.test, plan.train.eval_batch_size), BitObjective(cfg.loss),
                         on_epoch)
    summary = execute_run(
        plan, lambda: build_task_data(sets, cfg, plan.train),
        lambda model, record: test_model(model, sets, cfg, plan.train.eval_batch_size), tester,
        on_resume=tester.catch_up)
    if figures:
        draw_run_figures(NAME, plan.out)
    return summary


# -- CLI ----------------------------------------------------------------------------------
def plan_from_args(args: argparse.Namespace) -> RunPlan:
    task = AdditionTaskConfig(loss=args.loss, data=args.data, train_lengths=args.train_lengths,
                              train_size=args.train_size, test_pairs=args.test_pairs,
                              eval_lengths=args.eval_lengths, eval_pairs=args.eval_pairs,
                              train_bits=args.train_bits, train_noise=args.train_noise,
                              batching=args.batching)
    if args.dry_run:
        task = dry_run_config(task)
    train = train_config_from_args(args, epochs=1 if args.dry_run else args.epochs)
    model = model_config_from_args(args, input_size=2, num_outputs=1)
    return RunPlan(Path(args.out), NAME, "per_step", model, train, task.to_dict(),
                   force=args.force, resume=args.resume, quiet=args.quiet, tensorboard=args.tensorboard)


def print_epoch(row: dict) -> None:
    print(f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f} "
          f"bits {100 * row['train_accuracy']:.2f}% | valid bits {100 * row['valid_accuracy']:.2f}% | "
          f"test loss {row['test_loss']:.4f} bits {100 * row['test_accuracy']:.2f}% "
          f"numbers {100 * row['test_number_accuracy']:.2f}% | {row['seconds']:.1f}s", flush=True)


def run_train(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    plan = plan_from_args(args)
    summary = train_plan(plan, figures=not args.no_figures, on_epoch=None if args.quiet else print_epoch)
    test = summary["test"]
    print(f"{plan.out}: over lengths {test['eval_lengths']}, mean bit accuracy "
          f"{100 * test['bit_accuracy_mean']:.2f}%, mean whole-number accuracy "
          f"{100 * test['number_accuracy_mean']:.2f}%; best epoch {summary['best_epoch']}, "
          f"{summary['train_seconds']:.1f}s training")
    return 0


def add_train_parser(tasks) -> None:
    from rnnlab.cli import HelpFormatter

    d = REFERENCE_TASK
    p = tasks.add_parser("addition", help="binary addition, one sum bit per step",
                         formatter_class=HelpFormatter, description=__doc__)
    g = p.add_argument_group("data and loss")
    g.add_argument("--data", choices=DATA_SOURCES, default=d.data,
                   help="reference: one fixed training set; fresh: new pairs every epoch")
    g.add_argument("--train-lengths", default=d.train_lengths, metavar="SPEC",
                   help="training lengths: a range (1-20), one length (5) or a list (3,5,10)")
    g.add_argument("--train-size", type=int, default=d.train_size, metavar="N",
                   help="training pairs per epoch")
    g.add_argument("--train-bits", choices=TRAIN_BITS, default=d.train_bits,
                   help="uniform: N1, N2 uniform as at test time; varied: each training pair its "
                        "own share of differing bit pairs, so long carry chains are common")
    g.add_argument("--train-noise", type=float, default=d.train_noise, metavar="STD",
                   help="Gaussian noise added to the training inputs (0: none)")
    g.add_argument("--batching", choices=BATCHING, default=d.batching,
                   help="fresh data: mixed lengths in each batch, or one length per batch (faster)")
    g.add_argument("--test-pairs", type=int, default=d.test_pairs, metavar="N",
                   help="pairs in the test set scored every epoch (L uniform in 1..20) and in "
                        "the validation set (training lengths)")
    g.add_argument("--eval-lengths", default=d.eval_lengths, metavar="SPEC",
                   help="lengths scored after training, e.g. 1-20,50,100,1000")
    g.add_argument("--eval-pairs", type=int, default=d.eval_pairs, metavar="N",
                   help="pairs scored for each eval length")
    g.add_argument("--loss", choices=LOSSES, default=d.loss,
                   help="mse: squared error of the sigmoid (the reference); bce: binary "
                        "cross-entropy on the logits; multiclass-ce: the reference's flawed "
                        "\"cross-entropy\" (a softmax across time), only to measure that flaw")
    add_model_options(p, REFERENCE_MODEL)
    add_optim_options(p, REFERENCE_TRAIN)
    add_output_options(p, default_out="runs/addition")
    p.set_defaults(func=run_train)


def evaluate_run(record: RunRecord, args: argparse.Namespace) -> dict:
    """The summary's test dict, recomputed from the best checkpoint."""
    config = record.config()
    cfg = AdditionTaskConfig(**config["task_config"])
    if getattr(args, "dry_run", False):
        cfg = dry_run_config(cfg)
    model, _ = load_model(record, "best")
    sets = build_sets(replace(cfg, data="fresh"), config["train"]["seed"])  # no training set needed
    return test_model(model, sets, cfg, config["train"]["eval_batch_size"])


# -- predict ------------------------------------------------------------------------------
def parse_operands(inputs: Sequence[str], max_length: int) -> tuple[str, str]:
    """Two binary numbers, most significant bit first; one-line UserError otherwise."""
    if max_length < 1:
        raise UserError(f"max-length must be >= 1, got {max_length}")
    if len(inputs) != 2:
        raise UserError(f"addition runs take exactly two binary numbers (e.g. 1011 0110), got {len(inputs)}")
    for i, text in enumerate(inputs, start=1):
        if not text:
            raise UserError(f"number {i} is empty; give a binary number such as 1011")
        if set(text) - {"0", "1"}:
            raise UserError(f"number {i} ({text[:40]!r}) is not binary: use only 0 and 1, "
                            "most significant bit first")
        if len(text) > max_length:
            raise UserError(f"number {i} has {len(text)} bits, more than --max-length {max_length}; "
                            "raise --max-length to allow it")
    return inputs[0], inputs[1]


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
    x = torch.tensor([int_to_bits(a, steps), int_to_bits(b, steps)], dtype=torch.float32).T[None]  # (1, T, 2)
    bits = (model(x) > 0)[0].long().tolist()  # (T,) least significant first
    predicted, true = bits_to_int(bits), a + b
    return {"inputs": [first, second], "decimal": [decimal(a), decimal(b)], "steps": steps,
            "model_sum": format(predicted, f"0{steps}b"), "model_sum_decimal": decimal(predicted),
            "true_sum": format(true, f"0{steps}b"), "true_sum_decimal": decimal(true),
            "correct": predicted == true, "wrong_bits": (predicted ^ true).bit_count()}


def predict_run(record: RunRecord, inputs: list[str], args: argparse.Namespace) -> int:
    first, second = parse_operands(inputs, args.max_length)
    model, _ = load_model(record, "best")
    if getattr(args, "dry_run", False):
        print(f"{record.dir}: inputs and run are fine (dry run, nothing predicted)")
        return 0
    result = add_with_model(model, first, second)
    if args.json:
        print(json.dumps(result))
        return 0
    verdict = "right" if result["correct"] else f"wrong ({result['wrong_bits']} of {result['steps']} bits)"
    width = result["steps"]
    print(f"  {first:>{width}}  {result['decimal'][0]}\n+ {second:>{width}}  {result['decimal'][1]}\n"
          f"= {result['model_sum']}  {result['model_sum_decimal']}  (model: {verdict})\n"
          f"  {result['true_sum']}  {result['true_sum_decimal']}  (true sum)")
    return 0


# -- figures ------------------------------------------------------------------------------
def by_length(record: RunRecord) -> list[dict]:
    return record.summary()["test"]["by_length"] if record.is_complete else []


def run_label(record: RunRecord) -> str:
    """A legend entry from the run's own config: cell, hidden size, loss, training lengths."""
    return label_from_config(record.config())


def label_from_config(config: dict) -> str:
    """``run_label`` of a config.json already read."""
    model, task = config["model"], config["task_config"]
    loss = {"mse": "MSE", "bce": "BCE"}.get(task["loss"], task["loss"])
    return f"{model['cell'].upper()} hidden {model['hidden_size']}, {loss}, trained on L = {task['train_lengths']}"


def accuracy_by_length_figure(runs: Sequence[tuple[str, RunRecord]], title: str = ""):
    """Bit accuracy (left) and whole-number accuracy (right) against length, one line
    per (label, run): each label travels with its own record, so legends cannot swap."""
    from rnnlab.core.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    longest = 1
    for label, record in runs:
        rows = by_length(record)
        lengths = [r["length"] for r in rows]
        longest = max([longest, *lengths])
        for ax, key in zip(axes, ("bit_accuracy", "number_accuracy"), strict=True):
            ax.plot(lengths, [100 * r[key] for r in rows], marker="o", ms=3, label=label)
    for ax, name in zip(axes, ("bit accuracy (%)", "whole-number accuracy (%)"), strict=True):
        ax.set_xlabel("input length L (bits)")
        ax.set_ylabel(name)
        ax.set_ylim(-2, 102)
        if longest > 100:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Accuracy against input length", fontsize=10)
    return fig


def draw_accuracy_by_length(runs: Sequence[tuple[str, RunRecord]], path: Path, title: str = "") -> Path:
    """:func:`accuracy_by_length_figure` saved as ``path`` (e.g. to compare the exercise's models)."""
    from rnnlab.core.plots import save

    return save(accuracy_by_length_figure(runs, title), path)


def draw_figures(record: RunRecord, data_dir: str | None = None) -> list[Path]:
    """Loss by epoch (train, validation, test), test accuracy by epoch, accuracy by length."""
    from rnnlab.core.plots import plt, save

    rows, tests = record.metrics(), read_test_by_epoch(record)
    out = record.figures_dir
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    noise = record.config()["task_config"].get("train_noise", 0.0)
    loss_ax.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker="o", ms=3,
                 label=f"train (inputs with noise {noise:g})" if noise else "train")
    loss_ax.plot([r["epoch"] for r in rows], [r["valid_loss"] for r in rows], marker="o", ms=3,
                 label="validation (training lengths)")
    loss_ax.plot([r["epoch"] for r in tests], [r["test_loss"] for r in tests], marker="o", ms=3,
                 label="test (L in 1..20)")
    acc_ax.plot([r["epoch"] for r in tests], [100 * r["test_accuracy"] for r in tests], marker="o", ms=3,
                label="test bit accuracy")
    acc_ax.plot([r["epoch"] for r in tests], [100 * r["test_number_accuracy"] for r in tests], marker="o",
                ms=3, label="test whole-number accuracy")
    loss = record.config()["task_config"]["loss"]
    loss_name = {"mse": "MSE of the sigmoid", "bce": "binary cross-entropy"}.get(loss, loss)
    for ax, name in ((loss_ax, f"loss ({loss_name})"), (acc_ax, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training loss, test loss and test accuracy by epoch", fontsize=10)
    paths = [save(fig, out / "learning_curves.png")]
    if record.is_complete:
        paths.append(draw_accuracy_by_length([(run_label(record), record)], out / "accuracy_by_length.png"))
    return paths
