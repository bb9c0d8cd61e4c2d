"""Task 1: row-by-row MNIST (or Fashion-MNIST) classification.

Each 28x28 image is a sequence of 28 time steps (rows), each step the 28 pixels of
that row, scaled to [0, 1] and normalised with the dataset's mean and std. The
60,000 training images are split (seeded) into 50,000 train and 10,000 validation;
the 10,000 test images are the test set. One label per image is scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from rnnlab.core import images, plots
from rnnlab.core.devices import device_of
from rnnlab.core.errors import InputError, UserError, check
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord, rows_to_csv
from rnnlab.core.runs import TaskData
from rnnlab.core.train import (
    ClassificationObjective,
    ShuffledBatches,
    TrainConfig,
    evaluate,
    evaluate_outputs,
    metrics_of,
)
from rnnlab.tasks.base import Prediction, PredictOptions, Task
from rnnlab.tasks.mnist import study as study_module
from rnnlab.tasks.mnist.augment import training_transform
from rnnlab.tasks.mnist.data import (
    CLASS_NAMES,
    SIDE,
    MnistConfig,
    MnistSplits,
    data_root_of,
    load_splits,
    load_test_images,
    normalise,
    split_sizes,
)

SMALL_EXAMPLES = 2000  # --dry-run and --quick: train, validation and test images each


class MnistTask(Task):
    """Row-by-row image classification: 28 steps of 28 pixels, one label per image."""

    name = "mnist"
    title = "row-by-row MNIST / Fashion-MNIST classification"
    study = study_module  # experiments, report section, run figures
    input_kind = "image"  # the explorer's widget (rnnlab serve)
    Config = MnistConfig
    model_defaults = ModelConfig(cell="lstm", input_size=SIDE, hidden_size=100)
    train_defaults = TrainConfig(epochs=7, batch_size=500, lr=0.01, seed=2111)
    uses_data_dir = True
    input_help = "image files, folders or globs (PNG, JPEG, BMP, GIF, TIFF), or arrays and images"
    flaws = study_module.FLAWS

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.config.dataset]

    def model_shape(self) -> tuple[int, int]:
        return SIDE, len(self.class_names)

    def shrunk(self, batch_size: int) -> MnistTask:
        return MnistTask(replace(self.config, limit=SMALL_EXAMPLES))

    def examples_per_epoch(self) -> int:
        return split_sizes(self.config.num_valid, self.config.limit)[0]

    def mean_steps(self) -> float:
        return float(SIDE)

    # -- data, training, testing ---------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> MnistSplits:
        return load_splits(self.config, seed, data_root_of(data_dir))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def training_data(self, sets: MnistSplits, train: TrainConfig) -> TaskData:
        transform = training_transform(self.config)
        source = ShuffledBatches(sets.train, train.batch_size, train.seed, transform)
        valid = sets.valid.in_order(train.eval_batch_size)
        return TaskData(source, valid, ClassificationObjective())

    def test(self, model: nn.Module, sets: MnistSplits, batch_size: int, record: RunRecord) -> dict:
        """Test loss and accuracy, per-batch test loss, and the per-image predictions file."""
        results, logits = evaluate_outputs(model, sets.test.in_order(batch_size),
                                           ClassificationObjective())
        overall = metrics_of(results)
        predictions = logits.argmax(dim=-1).tolist()
        rows = [{"index": i, "label": int(t), "prediction": int(p)}
                for i, (t, p) in enumerate(zip(sets.test.y.tolist(), predictions, strict=True))]
        atomic_write_text(record.dir / "test_predictions.csv", rows_to_csv(rows))
        return {"loss": overall["loss"], "accuracy": overall["accuracy"],
                "examples": len(sets.test), "batch_size": batch_size,
                "batch_losses": [metrics_of([r])["loss"] for r in results]}

    def evaluate(self, model: nn.Module, sets: MnistSplits, batch_size: int) -> dict:
        return evaluate(model, sets.test.in_order(batch_size), ClassificationObjective())

    # -- prediction ----------------------------------------------------------------
    def check_model(self, run: RunRecord, payload: dict) -> None:
        shape = payload.get("model_config", {})
        if (payload.get("model_kind") != "classifier" or shape.get("input_size") != SIDE
                or shape.get("num_outputs") != len(self.class_names)):
            raise InputError(f"{run.dir} is not an image model ({payload.get('model_kind')} with "
                             f"{shape.get('input_size')} inputs)")

    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """Images (files, folders, globs, arrays, PIL images) in batches, each read the way
        MNIST's digits were made (core.images); a bad one yields its InputError."""
        names = self.class_names
        check(1 <= options.top <= len(names), "top",
              f"must be in 1..{len(names)}, got {options.top}")
        check(options.batch_size >= 1, "batch_size", f"must be >= 1, got {options.batch_size}")
        items, problems = image_items(inputs)
        yield from (InputError(p) for p in problems)
        shown = [None] * len(items)
        if options.show_input and not options.dry_run:
            shown = images.show_input_paths(options.show_input, [Path(n) for n, _ in items])
        for start in range(0, len(items), options.batch_size):
            chunk = range(start, min(start + options.batch_size, len(items)))
            good, pixels = [], []
            for i in chunk:
                try:
                    pixels.append(read_image(*items[i], self.config.dataset))
                    good.append(i)
                except UserError as err:
                    yield InputError(str(err))
                if options.progress is not None:
                    options.progress(1)
            if not good or options.dry_run:
                yield from (Prediction(None, "", source=items[i][0]) for i in good)
                continue
            probs = class_probabilities(model, np.stack(pixels), self.config.dataset)  # (B, C)
            for i, image, p in zip(good, pixels, probs, strict=True):
                if shown[i] is not None:
                    images.save_input(shown[i], image)
                yield image_prediction(items[i][0], p, names, options.top, shown[i])

    # -- figures and study -----------------------------------------------------------
    def draw_figures(self, record: RunRecord, data_dir: str | None) -> list[Path]:
        return draw_run_figures(record, self.class_names, self.config.dataset, data_dir)


# -- prediction helpers ---------------------------------------------------------------
def image_items(inputs: Sequence[Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, source) for every image the inputs name, and what is wrong with the others.
    A source is a path, a PIL image or an array; strings expand like a shell would."""
    names = [str(i) for i in inputs if isinstance(i, str | Path)]
    paths, problems = images.expand_inputs(names)
    items: list[tuple[str, Any]] = [(str(p), p) for p in paths]
    for n, item in enumerate(inputs):
        if isinstance(item, Image.Image | np.ndarray):
            items.append((f"<input {n}>", item))
        elif not isinstance(item, str | Path):
            problems.append(f"input {n} is a {type(item).__name__}, not an image, array or path")
    return items, problems


def read_image(name: str, source: Any, dataset: str) -> np.ndarray:
    """uint8 (28, 28) as the model's training images were made."""
    if isinstance(source, Path):
        return images.load_image(source, dataset)
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype.kind == "f" and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0  # floats in [0, 1], as plotting libraries keep images
        if array.dtype != np.uint8:
            array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
        try:
            source = Image.fromarray(array)
        except (TypeError, ValueError) as err:
            raise InputError(f"{name}: cannot read a {array.shape} array as an image "
                             f"({err})") from None
    return images.preprocess_image(source, name, dataset)


@torch.no_grad()
def class_probabilities(model: nn.Module, pixels: np.ndarray, dataset: str) -> Tensor:
    """uint8 (B, 28, 28) -> (B, C) class probabilities, normalised as in training."""
    model.eval()
    x = normalise(torch.from_numpy(pixels), dataset)  # (B, T=28, F=28) rows as time steps
    return torch.softmax(model(x.to(device_of(model))), dim=-1).cpu()


def image_prediction(name: str, probs: Tensor, names: Sequence[str], top: int,
                     shown: Path | None) -> Prediction:
    values, classes = probs.topk(top)
    ranked = [(int(c), names[int(c)], float(v)) for v, c in zip(values, classes, strict=True)]
    record = {"file": name, "prediction": ranked[0][0], "label_name": ranked[0][1],
              "probability": ranked[0][2],
              "probabilities": [{"class": c, "label_name": n, "probability": p}
                                for c, n, p in ranked]}
    if shown is not None:
        record["input_image"] = str(shown)
    text = f"{name}: " + ", ".join(f"{n} ({100 * p:.1f}%)" for _, n, p in ranked)
    return Prediction(ranked[0][0], text, tuple(probs.tolist()), record, source=name)


# -- figures (from the records only) --------------------------------------------------
def draw_run_figures(record: RunRecord, names: list[str], dataset: str,
                     data_dir: str | None) -> list[Path]:
    config = record.config()
    out = record.figures_dir
    paths = plots.draw_learning_curves([(config["model"]["cell"].upper(), record)], out)
    if record.is_complete:
        paths.append(plots.draw_batch_losses(record, out / "test_loss_per_batch.png"))
    rows = plots.read_predictions(record)
    if not rows:
        return paths
    matrix = plots.confusion_matrix(rows, len(names))
    paths.append(plots.draw_confusion(matrix, names, out / "confusion_matrix.png"))
    test_images = load_test_images(dataset, data_dir)
    if test_images is not None:
        paths.append(plots.draw_image_grid(test_images, rows[:10], names, out / "test_examples.png",
                                           "First 10 test images"))
        wrong = [r for r in rows if r["prediction"] != r["label"]][:20]
        if wrong:
            paths.append(plots.draw_image_grid(test_images, wrong, names, out / "misclassified.png",
                                               "Misclassified test images (red)"))
    return paths
