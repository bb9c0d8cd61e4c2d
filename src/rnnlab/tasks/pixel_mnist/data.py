"""Pixel-MNIST's data: MNIST's splits read one pixel a step, in a fixed (seeded) order.

The images, splits and normalisation are MNIST's (``rnnlab.tasks.mnist.data``); this
module only turns each normalised (28, 28) image into a 784-step sequence of one
feature, row-major (pixel ``28 * row + column`` at step ``28 * row + column``), or,
with ``permute``, in the order of a permutation fixed by ``permutation_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnlab.core.errors import check
from rnnlab.core.seeding import stream_seed
from rnnlab.core.settings import setting
from rnnlab.core.train import TensorDataset
from rnnlab.tasks.mnist.data import SIDE, MnistConfig, MnistSplits

STEPS = SIDE * SIDE  # 784: one time step per pixel
PERMUTATION_STREAM = "pixel-mnist"  # the namespace of the permutation's seed hashes


@dataclass(frozen=True)
class PixelMnistConfig(MnistConfig):
    """MNIST's settings (dataset, limit) plus the pixel order."""

    augment_shift: int = 0  # not offered: shifts are defined on images, not pixel sequences
    augment: str = "none"  # not offered either, for the same reason
    permute: bool = setting(False, "read the pixels in a fixed random order (psMNIST)")
    permutation_seed: int = setting(0, "seed of the pixel order (with permute)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.augment_shift == 0, "augment_shift",
              f"is not offered on pixel sequences, got {self.augment_shift}")
        check(self.augment == "none", "augment",
              f"is not offered on pixel sequences, got {self.augment!r}")
        check(isinstance(self.permute, bool), "permute",
              f"must be true or false, got {self.permute!r}")
        seed = self.permutation_seed
        check(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63,
              "permutation_seed", f"must be an integer in 0..2**63-1, got {seed!r}")

    def images(self) -> MnistConfig:
        """The MNIST config of the same images (shares ``load_splits``'s cache with MNIST)."""
        return MnistConfig(self.dataset, self.num_valid, 0, self.limit)

    def order(self) -> list[int] | None:
        """The pixel read at each step (None: row-major); see :func:`permutation`."""
        return permutation(self.permutation_seed) if self.permute else None


def permutation(seed: int) -> list[int]:
    """The psMNIST pixel order of ``seed``: step t reads pixel ``permutation(seed)[t]``.

    The pixels sorted by a SHA-256 hash of (namespace, seed, pixel): a uniformly random
    permutation that depends on the seed alone, never on a library's random generator,
    so a run's record reproduces it on any machine and any torch or numpy version.
    """
    return sorted(range(STEPS), key=lambda pixel: stream_seed(PERMUTATION_STREAM, seed, pixel))


def pixel_sequences(images: Tensor, order: list[int] | None) -> Tensor:
    """float (N, 28, 28) normalised images -> (N, T=784, F=1), one pixel a step."""
    x = images.reshape(images.shape[0], STEPS, 1)  # (N, 784, 1) row-major
    return x if order is None else x[:, torch.tensor(order)]  # (N, 784, 1) step t: pixel order[t]


def pixel_splits(splits: MnistSplits, order: list[int] | None) -> MnistSplits:
    """MNIST's splits with every image read as a pixel sequence (new tensors; the cached
    image splits are left as they were)."""
    return MnistSplits(*(TensorDataset(pixel_sequences(d.x, order), d.y)
                         for d in (splits.train, splits.valid, splits.test)))
