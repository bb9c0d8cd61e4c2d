"""The seeded train/validation split."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import random_split

from rnnlab.core.data import MNIST_NUM_VALID, train_valid_split
from rnnlab.core.errors import UserError

torch.set_num_threads(1)


def test_mnist_split_sizes_and_disjoint():
    train, valid = train_valid_split(60_000, MNIST_NUM_VALID, seed=2111)
    assert (len(train), len(valid)) == (50_000, 10_000)
    assert train.dtype == valid.dtype == torch.int64
    together = torch.cat([train, valid])
    assert torch.equal(together.sort().values, torch.arange(60_000))  # disjoint and covering


def test_reproducible_from_the_seed_and_different_for_another():
    a = train_valid_split(1000, 100, seed=7)
    b = train_valid_split(1000, 100, seed=7)
    c = train_valid_split(1000, 100, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_valid_split(1000, 100, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_matches_torch_random_split():
    train, valid = train_valid_split(500, 50, seed=3)
    ref_train, ref_valid = random_split(
        range(500), [450, 50], generator=torch.Generator().manual_seed(3)
    )
    assert train.tolist() == list(ref_train.indices)
    assert valid.tolist() == list(ref_valid.indices)


@pytest.mark.parametrize("num_valid", [-1, 100, 101])
def test_bad_sizes_are_user_errors(num_valid):
    with pytest.raises(UserError, match=r"validation"):
        train_valid_split(100, num_valid, seed=0)
