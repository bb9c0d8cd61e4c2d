"""MNIST's data for the task: the config, the normalisation, the seeded splits."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnlab.core.data import default_data_root, load_dataset, train_valid_split
from rnnlab.core.data.split import MNIST_NUM_VALID
from rnnlab.core.errors import UserError, check, check_choice
from rnnlab.core.settings import setting
from rnnlab.core.train import Batch, TensorDataset

# (mean, std) of the training pixels in [0, 1]; MNIST's are the reference's values.
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Boot"],
}
SIDE = 28  # rows (time steps) and pixels per row
AUGMENTATIONS = ("none", "robust")  # robust: tasks/mnist/augment.py


@dataclass(frozen=True)
class MnistConfig:
    dataset: str = setting("mnist", "image dataset", choices=tuple(NORMALISATION))
    num_valid: int = MNIST_NUM_VALID
    augment_shift: int = setting(0, "random shift of training images, in pixels")
    limit: int | None = setting(None, "use only the first N training, validation and test "
                                "images (quick looks; default: all)", kind=int, metavar="N")
    # last, so positional construction (MnistConfig(dataset, num_valid, shift, limit)) holds
    augment: str = setting("none", "augmentation of training images: robust = random rotation, "
                           "scale, translation, stroke thickness and elastic distortion "
                           "(for drawings and printed digits)", choices=AUGMENTATIONS)

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, tuple(NORMALISATION))
        check_choice("augment", self.augment, AUGMENTATIONS)
        check(0 <= self.augment_shift <= 8, "augment_shift",
              f"must be in 0..8 pixels, got {self.augment_shift}")
        check(1 <= self.num_valid < 60_000, "num_valid",
              f"must be in 1..59999, got {self.num_valid}")
        check(self.limit is None or self.limit >= 1, "limit", f"must be >= 1, got {self.limit}")

    def to_dict(self) -> dict:
        """The config as a run records it. ``augment`` is left out while it is "none", so a
        run recorded before the setting existed still matches the plan that made it (and
        the reference profile's records stay as they were)."""
        values = asdict(self)
        if values["augment"] == "none":
            del values["augment"]
        return values


def split_sizes(num_valid: int, limit: int | None, total: int = 60_000) -> tuple[int, int]:
    """(training, validation) images of a run: ``load_splits``'s arithmetic, for readers
    of a config.json (MNIST and Fashion-MNIST both have 60,000 training images)."""
    train, valid = total - num_valid, num_valid
    return (train, valid) if limit is None else (min(train, limit), min(valid, limit))


def normalise(images_u8: Tensor, dataset: str) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, T=28, F=28), rows as time steps."""
    mean, std = NORMALISATION[dataset]
    return (images_u8.float() / 255.0 - mean) / std


def shift_images(batch: Batch, generator: torch.Generator, max_shift: int,
                 background: float) -> Batch:
    """Shift every image of the batch by its own random (dy, dx) in [-max_shift, max_shift]."""
    x = batch.x  # (B, 28, 28)
    b, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=background)  # (B, 28+2s, 28+2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].expand(b, h, w)  # (B, 28, 28)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].expand(b, h, w)
    shifted = padded[torch.arange(b)[:, None, None], rows, cols]
    return Batch(shifted, batch.y, batch.lengths)


@dataclass
class MnistSplits:
    train: TensorDataset
    valid: TensorDataset
    test: TensorDataset


@functools.lru_cache(maxsize=1)  # reproduce trains many models on the same split in one process
def load_splits(cfg: MnistConfig, seed: int, data_root: Path) -> MnistSplits:
    arrays = load_dataset(cfg.dataset, data_root)
    train_idx, valid_idx = train_valid_split(arrays.train_images.shape[0], cfg.num_valid, seed)
    test_x, test_y = arrays.test_images, arrays.test_labels
    if cfg.limit is not None:
        train_idx, valid_idx = train_idx[: cfg.limit], valid_idx[: cfg.limit]
        test_x, test_y = test_x[: cfg.limit], test_y[: cfg.limit]
    pixels = normalise(arrays.train_images, cfg.dataset)
    return MnistSplits(
        train=TensorDataset(pixels[train_idx], arrays.train_labels[train_idx]),
        valid=TensorDataset(pixels[valid_idx], arrays.train_labels[valid_idx]),
        test=TensorDataset(normalise(test_x, cfg.dataset), test_y),
    )


def data_root_of(data_dir: str | None) -> Path:
    # resolved before the cache above, so it never serves one data root's images for another
    return Path(data_dir) if data_dir else default_data_root()


def load_test_images(dataset: str, data_dir: str | None) -> np.ndarray | None:
    """The test images, for figures of predictions; None (the figure is skipped) when
    the data set is not on this machine."""
    try:
        arrays = load_dataset(dataset, data_root_of(data_dir))
    except UserError:
        return None
    return arrays.test_images.numpy()
