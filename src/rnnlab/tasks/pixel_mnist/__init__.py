"""Pixel-by-pixel MNIST (sMNIST) and its permuted form (psMNIST).

Each 28x28 image is a sequence of 784 time steps of one feature: the pixel, scaled to
[0, 1] and normalised with the dataset's mean and std exactly as row-MNIST's. Step
``t`` reads pixel ``t`` in row-major order (row ``t // 28``, column ``t % 28``); with
``permute``, step ``t`` reads pixel ``order[t]`` of one fixed permutation, made from
``permutation_seed`` (``data.permutation``) and written to the run's
``permutation.json``. The splits are MNIST's (50,000 train, 10,000 validation,
10,000 test; seeded); one label per image is scored, after the last step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from rnnlab.core.errors import InputError
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.records import RunRecord
from rnnlab.tasks.base import Prediction, PredictOptions
from rnnlab.tasks.mnist import MnistTask
from rnnlab.tasks.mnist.data import MnistSplits, data_root_of, load_splits
from rnnlab.tasks.pixel_mnist import study as study_module
from rnnlab.tasks.pixel_mnist.data import (
    STEPS,
    PixelMnistConfig,
    pixel_sequences,
    pixel_splits,
)

# --dry-run and --quick: images per split. A 784-step image costs 28 times the steps of
# a row-MNIST image, so fewer than MNIST's 2,000.
SMALL_EXAMPLES = 256
PERMUTATION_FILE = "permutation.json"


class PixelReader(nn.Module):
    """A pixel-sequence model that takes normalised images: (B, 28, 28) are read in the
    task's pixel order before the model sees them (how ``predict`` feeds images)."""

    def __init__(self, model: nn.Module, order: list[int] | None):
        super().__init__()
        self.model, self.order = model, order

    def forward(self, images: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.model(pixel_sequences(images, self.order), lengths)  # (B, T=784, F=1) in


class PixelMnistTask(MnistTask):
    """Image classification one pixel a step: 784 steps of 1 feature, one label per image."""

    name = "pixel-mnist"
    title = "pixel-by-pixel MNIST / Fashion-MNIST (sMNIST, psMNIST with permute)"
    study = study_module  # experiments, report section, run figures
    input_kind = None  # one pixel a step: the row-by-row image inspector does not fit
    Config = PixelMnistConfig
    # the LSTM recipe of the long-range-recipes profile
    model_defaults = study_module.MODELS["lstm"]
    train_defaults = study_module.RECIPES["lstm"]
    train_epilog = ("examples:\n  rnnlab train pixel-mnist --dry-run\n"
                    "  rnnlab train pixel-mnist --permute --permutation-seed 0 --epochs 4")
    flaws = ()  # MNIST's flaws are the exercise's row model's, not this task's

    def model_shape(self) -> tuple[int, int]:
        return 1, len(self.class_names)

    def shrunk(self, batch_size: int) -> PixelMnistTask:
        return PixelMnistTask(replace(self.config, limit=SMALL_EXAMPLES))

    def mean_steps(self) -> float:
        return float(STEPS)

    def order(self) -> list[int] | None:
        """The pixel each step reads (None: row-major)."""
        return self.config.order()

    # -- data and testing ----------------------------------------------------------
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> MnistSplits:
        images = load_splits(self.config.images(), seed, data_root_of(data_dir))
        return pixel_splits(images, self.order())

    def test(self, model: nn.Module, sets: MnistSplits, batch_size: int, record: RunRecord) -> dict:
        """MNIST's test, plus ``permutation.json``: the pixel each step read."""
        atomic_write_json(record.dir / PERMUTATION_FILE, self.permutation_record())
        return super().test(model, sets, batch_size, record)

    def permutation_record(self) -> dict:
        order = self.order()
        return {"permute": self.config.permute,
                "permutation_seed": self.config.permutation_seed if order else None,
                "order": order if order is not None else list(range(STEPS)),
                "meaning": "step t reads pixel order[t] of the image in row-major order "
                           "(pixel = 28 * row + column)"}

    # -- prediction ----------------------------------------------------------------
    def check_model(self, run: RunRecord, payload: dict) -> None:
        shape = payload.get("model_config", {})
        if (payload.get("model_kind") != "classifier" or shape.get("input_size") != 1
                or shape.get("num_outputs") != len(self.class_names)):
            raise InputError(f"{run.dir} is not a pixel-sequence model "
                             f"({payload.get('model_kind')} with {shape.get('input_size')} inputs)")

    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """Images read as MNIST's task reads them, then fed in this task's pixel order."""
        return super().predict(PixelReader(model, self.order()), inputs, options)
