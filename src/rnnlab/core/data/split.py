"""The seeded train/validation split of a training set (MNIST: 50,000 / 10,000)."""

from __future__ import annotations

import torch

from rnnlab.core.errors import DataError

MNIST_NUM_VALID = 10_000  # the reference keeps 10,000 of the 60,000 training images for validation


def train_valid_split(
    num_examples: int, num_valid: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, valid) index tensors drawn from a seeded permutation.

    The first ``num_examples - num_valid`` entries of
    ``torch.randperm(num_examples)`` under a fresh ``torch.Generator`` seeded
    with ``seed`` are the training indices, the rest validation: the same
    indices as ``torch.utils.data.random_split(range(num_examples),
    [num_examples - num_valid, num_valid], generator)``. The global RNG is
    not touched.

    Raises:
        UserError: unless ``0 <= num_valid < num_examples``.
    """
    if not 0 <= num_valid < num_examples:
        raise DataError(
            f"cannot keep {num_valid} of {num_examples} examples for validation; "
            "need 0 <= num_valid < num_examples"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_examples, generator=generator)
    num_train = num_examples - num_valid
    return order[:num_train], order[num_train:]
