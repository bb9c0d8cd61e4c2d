"""The restricted unpickler and the conversion of the classic MNIST pickle to IDX."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from rnnlab.core.data.idx import decode_idx
from rnnlab.core.data.safe_pickle import load_numpy_pickle
from rnnlab.core.data.sources import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    mnist_pickle_to_idx,
)
from rnnlab.core.errors import UserError

torch.set_num_threads(1)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_naming_os_system(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsShell(marker), protocol=2)
    with pytest.raises(
        UserError, match=r"evil.pkl: refusing to unpickle: it names (os|posix)\.system"
    ):
        load_numpy_pickle(data, "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("obj", [print, eval, np.save, {1, 2}, (np.arange(3), np.sum)])
def test_refuses_any_other_global(obj):
    with pytest.raises(UserError, match=r"refusing to unpickle"):
        load_numpy_pickle(pickle.dumps(obj, protocol=2), "x.pkl")


def test_accepts_a_numpy_array_pickle():
    # Protocol 3: Python 3 at protocol 2 would route bytes through _codecs.encode,
    # which the classic MNIST pickle (Python 2) never names, so it stays refused.
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2, 3], dtype=np.int64))
    back = load_numpy_pickle(pickle.dumps(arrays, protocol=3), "ok.pkl")
    for a, b in zip(arrays, back, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_accepts_the_numpy_1_spelling_of_reconstruct():
    # The real mnist.pkl.gz was written by numpy 1, which named numpy.core.multiarray.
    data = pickle.dumps(np.arange(5, dtype=np.int64), protocol=3)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    np.testing.assert_array_equal(load_numpy_pickle(old, "old.pkl"), np.arange(5))


@pytest.mark.parametrize("data", [b"", b"garbage", pickle.dumps(np.arange(3), protocol=3)[:-5]])
def test_damaged_pickle_is_a_user_error(data):
    with pytest.raises(UserError, match=r"bad.pkl"):
        load_numpy_pickle(data, "bad.pkl")


def _classic_pickle_parts(seed: int = 0):
    rng = np.random.default_rng(seed)

    def part(n):
        pixels = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        return pixels, (pixels / 256).astype(np.float32), labels

    return part(5), part(2), part(3)


def test_pickle_to_idx_recovers_bytes_and_joins_train_and_valid():
    (tr_b, tr_x, tr_y), (va_b, va_x, va_y), (te_b, te_x, te_y) = _classic_pickle_parts()
    files = mnist_pickle_to_idx(((tr_x, tr_y), (va_x, va_y), (te_x, te_y)), "m.pkl")
    train = decode_idx(files[TRAIN_IMAGES])
    assert train.shape == (7, 28, 28)
    np.testing.assert_array_equal(train.reshape(7, 784), np.concatenate([tr_b, va_b]))
    np.testing.assert_array_equal(decode_idx(files[TRAIN_LABELS]), np.concatenate([tr_y, va_y]))
    np.testing.assert_array_equal(decode_idx(files[TEST_IMAGES]).reshape(3, 784), te_b)
    np.testing.assert_array_equal(decode_idx(files[TEST_LABELS]), te_y)


def test_pickle_to_idx_refuses_inexact_pixels():
    (_, tr_x, tr_y), va, te = _classic_pickle_parts()
    tr_x = tr_x.copy()
    tr_x[0, 0] = 0.5 / 256  # halfway between two bytes: not byte/256
    with pytest.raises(UserError, match=r"not exactly byte/256"):
        mnist_pickle_to_idx(((tr_x, tr_y), (va[1], va[2]), (te[1], te[2])), "m.pkl")


@pytest.mark.parametrize(
    "obj",
    [
        None,
        (1, 2, 3),
        ((np.zeros((2, 784), np.float64), np.zeros(2, np.int64)),) * 3,
        ((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3,
        ((np.zeros((2, 784), np.float32), np.full(2, 10, np.int64)),) * 3,
    ],
)
def test_pickle_to_idx_refuses_other_layouts(obj):
    with pytest.raises(UserError, match=r"m.pkl"):
        mnist_pickle_to_idx(obj, "m.pkl")
