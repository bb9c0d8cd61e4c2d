"""Task 1: row-by-row MNIST (or Fashion-MNIST) classification.

Each 28x28 image is a sequence of 28 time steps (rows), each step the 28 pixels of
that row, scaled to [0, 1] and normalised with the dataset's mean and std. The
60,000 training images are split (seeded) into 50,000 train and 10,000 validation;
the 10,000 test images are the test set. One label per image is scored.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnlab.core.data.split import MNIST_NUM_VALID
from rnnlab.core.errors import UserError
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.models import ModelConfig
from rnnlab.cli.options import (
    add_model_options,
    add_optim_options,
    add_output_options,
    model_config_from_args,
    train_config_from_args,
)
from rnnlab.core.records import RunRecord, rows_to_csv
from rnnlab.core.runs import RunPlan, TaskData, execute_run, load_model
from rnnlab.tasks import draw_run_figures
from rnnlab.core.train import (
    Batch,
    ClassificationObjective,
    ShuffledBatches,
    TensorDataset,
    TrainConfig,
    configure_threads,
    evaluate,
    evaluate_outputs,
    metrics_of,
)

NAME = "mnist"
# (mean, std) of the training pixels in [0, 1]; MNIST's are the reference's values.
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Boot"],
}
DRY_RUN_EXAMPLES = 1500  # a few batches end to end: enough to exercise every step


@dataclass(frozen=True)
class MnistTaskConfig:
    dataset: str = "mnist"
    num_valid: int = MNIST_NUM_VALID
    augment_shift: int = 0  # max random shift in pixels, each axis, per training image
    limit: int | None = None  # keep only this many train/valid/test images (dry runs, tests)

    def __post_init__(self) -> None:
        if self.dataset not in NORMALISATION:
            raise UserError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(NORMALISATION)}")
        if not 0 <= self.augment_shift <= 8:
            raise UserError(f"augment-shift must be in 0..8 pixels, got {self.augment_shift}")
        if not 1 <= self.num_valid < 60_000:
            raise UserError(f"num-valid must be in 1..59999, got {self.num_valid}")


def split_sizes(num_valid: int, limit: int | None, total: int = 60_000) -> tuple[int, int]:
    """(training, validation) images of a run: ``load_splits_from``'s arithmetic, for readers
    of a config.json (MNIST and Fashion-MNIST both have 60,000 training images)."""
    train, valid = total - num_valid, num_valid
    return (train, valid) if limit is None else (min(train, limit), min(valid, limit))


REFERENCE_MODEL = ModelConfig(cell="lstm", input_size=28, hidden_size=100)
REFERENCE_TRAIN = TrainConfig(epochs=7, batch_size=500, lr=0.01, seed=2111)


def normalise(images: Tensor, dataset: str) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, T=28, F=28), rows as time steps."""
    mean, std = NORMALISATION[dataset]
    return (images.float() / 255.0 - mean) / std


def shift_images(batch: Batch, generator: torch.Generator, max_shift: int, background: float) -> Batch:
    """Shift every image of the batch by its own random (dy, dx) in [-max_shift, max_shift]."""
    x = batch.x  # (B, 28, 28)
    b, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=background)  # (B, 28+2s, 28+2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator))
    rows = (dy[:, None] + torch.arange(h))[:, :, None].expand(b, h, w)  # (B, 28, 28)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].expand(b, h, w)
    shifted = padded[torch.arange(b)[:, None, None], rows, cols]
    return Batch(shifted, batch.y, batch.lengths)


@dataclass
class MnistSplits:
    train: TensorDataset
    valid: TensorDataset
    test: TensorDataset


def load_splits(task: MnistTaskConfig, seed: int, data_dir: str | None) -> MnistSplits:
    from rnnlab.core.data import default_data_root

    # resolved here, so the cache below never serves one data root's images for another
    return load_splits_from(task, seed, Path(data_dir) if data_dir else default_data_root())


@functools.lru_cache(maxsize=1)  # reproduce trains many models on the same split in one process
def load_splits_from(task: MnistTaskConfig, seed: int, data_root: Path) -> MnistSplits:
    from rnnlab.core.data import load_dataset, train_valid_split

    arrays = load_dataset(task.dataset, data_root)
    train_idx, valid_idx = train_valid_split(arrays.train_images.shape[0], task.num_valid, seed)
    test_x, test_y = arrays.test_images, arrays.test_labels
    if task.limit is not None:
        train_idx, valid_idx = train_idx[: task.limit], valid_idx[: task.limit]
        test_x, test_y = test_x[: task.limit], test_y[: task.limit]
    images = normalise(arrays.train_images, task.dataset)
    return MnistSplits(
        train=TensorDataset(images[train_idx], arrays.train_labels[train_idx]),
        valid=TensorDataset(images[valid_idx], arrays.train_labels[valid_idx]),
        test=TensorDataset(normalise(test_x, task.dataset), test_y),
    )


def build_task_data(splits: MnistSplits, task: MnistTaskConfig, train: TrainConfig) -> TaskData:
    transform = None
    if task.augment_shift:
        background = float(normalise(torch.zeros(1, dtype=torch.uint8), task.dataset))
        def transform(batch, generator):
            return shift_images(batch, generator, task.augment_shift, background)
    source = ShuffledBatches(splits.train, train.batch_size, train.seed, transform)
    return TaskData(source, splits.valid.in_order(train.eval_batch_size), ClassificationObjective())


def test_model(model: nn.Module, record: RunRecord, test: TensorDataset, batch_size: int) -> dict:
    """Test loss and accuracy, per-batch test loss, and the per-image predictions file."""
    batches = test.in_order(batch_size)
    objective = ClassificationObjective()
    results, logits = evaluate_outputs(model, batches, objective)
    overall = metrics_of(results)
    batch_losses = [metrics_of([r])["loss"] for r in results]
    predictions = logits.argmax(dim=-1)
    rows = [{"index": i, "label": int(t), "prediction": int(p)}
            for i, (t, p) in enumerate(zip(test.y.tolist(), predictions.tolist(), strict=True))]
    atomic_write_text(record.dir / "test_predictions.csv", rows_to_csv(rows))
    return {"loss": overall["loss"], "accuracy": overall["accuracy"], "examples": len(test),
            "batch_size": batch_size, "batch_losses": batch_losses}


def plan_from_args(args: argparse.Namespace) -> tuple[RunPlan, str | None]:
    task = MnistTaskConfig(dataset=args.dataset, augment_shift=args.augment_shift,
                           limit=DRY_RUN_EXAMPLES if args.dry_run else None)
    train = train_config_from_args(args, epochs=1 if args.dry_run else args.epochs)
    model = model_config_from_args(args, input_size=28, num_outputs=10)
    plan = RunPlan(Path(args.out), NAME, "classifier", model, train, asdict(task),
                   force=args.force, resume=args.resume, quiet=args.quiet,
                   tensorboard=args.tensorboard)
    return plan, args.data_dir


def train_plan(plan: RunPlan, *, data_dir: str | None = None, figures: bool = True,
               on_epoch=None) -> dict:
    """Train one MNIST run from a plan (used by the CLI and by ``rnnlab reproduce``)."""
    task = MnistTaskConfig(**plan.task_config)
    splits = load_splits(task, plan.train.seed, data_dir)
    summary = execute_run(
        plan, lambda: build_task_data(splits, task, plan.train),
        lambda model, record: test_model(model, record, splits.test, plan.train.eval_batch_size),
        on_epoch)
    if figures:
        draw_run_figures(NAME, plan.out, data_dir)
    return summary


def run_train(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    plan, data_dir = plan_from_args(args)
    summary = train_plan(plan, data_dir=data_dir, figures=not args.no_figures,
                          on_epoch=None if args.quiet else print_epoch)
    test = summary["test"]
    print(f"{plan.out}: test accuracy {100 * test['accuracy']:.2f}% (loss {test['loss']:.4f}), "
          f"best epoch {summary['best_epoch']}, {summary['train_seconds']:.1f}s training")
    return 0


def print_epoch(row: dict) -> None:
    print(f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f} "
          f"acc {100 * row['train_accuracy']:.2f}% | valid loss {row['valid_loss']:.4f} "
          f"acc {100 * row['valid_accuracy']:.2f}% | {row['seconds']:.1f}s", flush=True)


def add_train_parser(tasks) -> None:
    from rnnlab.cli import HelpFormatter

    p = tasks.add_parser("mnist", help="row-by-row MNIST / Fashion-MNIST classification",
                         formatter_class=HelpFormatter, description=__doc__)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=list(NORMALISATION), default="mnist", help="image dataset")
    g.add_argument("--data-dir", default=None, help="data root (default: $RNNLAB_DATA or the user cache)")
    g.add_argument("--augment-shift", type=int, default=0, help="random shift of training images, in pixels")
    add_model_options(p, REFERENCE_MODEL)
    add_optim_options(p, REFERENCE_TRAIN)
    add_output_options(p, default_out="runs/mnist")
    p.set_defaults(func=run_train)


def evaluate_run(record: RunRecord, args: argparse.Namespace) -> dict:
    config = record.config()
    task = MnistTaskConfig(**config["task_config"])
    if getattr(args, "dry_run", False):
        task = replace(task, limit=DRY_RUN_EXAMPLES)
    model, _ = load_model(record, "best")  # a bad checkpoint is refused before the data loads
    splits = load_splits(task, config["train"]["seed"], getattr(args, "data_dir", None))
    batches = splits.test.in_order(config["train"]["eval_batch_size"])
    return evaluate(model, batches, ClassificationObjective())


def predict_run(record: RunRecord, inputs: list[str], args: argparse.Namespace) -> int:
    from rnnlab.core.images import predict_images

    return predict_images(record, inputs, args)


def draw_figures(record: RunRecord, data_dir: str | None = None) -> list[Path]:
    from rnnlab.core import plots

    return plots.draw_mnist_figures(record, data_dir)
