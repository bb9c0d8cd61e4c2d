"""A full-size but learnable fake MNIST for tests that go through the real loader.

Each image is blank except for a bright block over rows 4..23 whose columns
start at 2*label (plus jitter on its height), so a small recurrent model learns
it in a few batches. The files are real gzipped IDX with a
MANIFEST.json written by the data layer itself, exactly as `rnnlab data fetch` leaves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnlab.core.data.idx import encode_idx, gzip_bytes
from rnnlab.core.data.sources import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    dataset_spec,
    sha256_hex,
)
from rnnlab.core.data.store import ManifestEntry, write_manifest
from rnnlab.core.fileio import atomic_write_bytes


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    top = rng.integers(2, 8, size=len(labels))
    for i, (label, first_row) in enumerate(zip(labels.astype(np.int64), top, strict=True)):
        images[i, first_row : first_row + 18, 2 * label : 2 * label + 8] = 255
    return images


def write_fake_mnist(root: Path, dataset: str = "mnist", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    spec = dataset_spec(dataset)
    train_labels = rng.integers(0, 10, size=60_000).astype(np.uint8)
    test_labels = rng.integers(0, 10, size=10_000).astype(np.uint8)
    arrays = {TRAIN_IMAGES: fake_images(train_labels, rng), TRAIN_LABELS: train_labels,
              TEST_IMAGES: fake_images(test_labels, rng), TEST_LABELS: test_labels}
    folder = root / spec.name
    entries = {}
    for name, array in arrays.items():
        data = gzip_bytes(encode_idx(array))
        atomic_write_bytes(folder / name, data)
        entries[name] = ManifestEntry(sha256_hex(data), len(data), tuple(array.shape),
                                      "fake for tests")
    write_manifest(folder, spec, entries)
    return root
