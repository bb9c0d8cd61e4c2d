"""MNIST and Fashion-MNIST as verified IDX files on disk and uint8 tensors in memory.

Public API::

    fetch(dataset, data_root=None, log=print) -> FetchResult
    load_dataset(dataset, data_root=None) -> MnistArrays
    train_valid_split(num_examples, num_valid, seed) -> (train_idx, valid_idx)
    default_data_root() -> Path
    dataset_present(dataset, data_root=None) -> bool
    inspect_dataset(dataset, data_root=None) -> list[FileStatus]
    read_idx(path) / write_idx(path, array)
"""

from rnnlab.core.data.idx import decode_idx, encode_idx, read_idx, write_idx
from rnnlab.core.data.sources import DATASETS
from rnnlab.core.data.split import MNIST_NUM_VALID, train_valid_split
from rnnlab.core.data.store import (
    FetchResult,
    FileStatus,
    MnistArrays,
    dataset_dir,
    dataset_present,
    default_data_root,
    fetch,
    inspect_dataset,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "MNIST_NUM_VALID",
    "FetchResult",
    "FileStatus",
    "MnistArrays",
    "dataset_dir",
    "dataset_present",
    "decode_idx",
    "default_data_root",
    "encode_idx",
    "fetch",
    "inspect_dataset",
    "load_dataset",
    "read_idx",
    "train_valid_split",
    "write_idx",
]
