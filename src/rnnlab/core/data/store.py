"""The data root on disk: fetch the IDX files, record their checksums, verify and load them.

Layout::

    <root>/<dataset>/train-images-idx3-ubyte.gz   (and the three other IDX files)
    <root>/<dataset>/MANIFEST.json                sha256, size, shape and source of each

``<root>`` is ``--data-dir``, else ``$RNNLAB_DATA``, else ``$XDG_CACHE_HOME/rnnlab``
or ``~/.cache/rnnlab``. Every file is written atomically, each one only after
its decompressed bytes matched the official md5, and the manifest last, so an
interrupted fetch leaves at worst some verified files and no manifest.
:func:`load_dataset` re-hashes all four files against the manifest on every
load (about 12 MB for MNIST, a fraction of a second).

Files you already have: copy the four official files, gzipped or not, under
their standard names into ``<root>/<dataset>/`` and run ``rnnlab data fetch``.
It adopts files whose content matches the official checksums (gzipping plain
ones), writes the manifest and downloads nothing. A file that does not match is
refused, never overwritten: delete it and fetch again. Loading never adopts: it
needs the manifest that fetch writes.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.core.data.idx import (
    decode_idx,
    decode_idx_file_bytes,
    gunzip,
    gzip_bytes,
    read_file_bytes,
)
from rnnlab.core.data.sources import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSpec,
    FileSpec,
    Payload,
    SourceUnavailable,
    dataset_spec,
    md5_hex,
    sha256_hex,
)
from rnnlab.core.errors import DataError, UserError
from rnnlab.core.fileio import atomic_write_bytes, atomic_write_json

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 1
FOUND_LOCALLY = "found in the data folder"

Log = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class MnistArrays:
    """A whole MNIST-style data set in memory, exactly as stored (no scaling)."""

    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64, 0..9
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64, 0..9


@dataclass(frozen=True)
class ManifestEntry:
    """What MANIFEST.json records about one stored file."""

    sha256: str
    size: int
    shape: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did: the folder, and the sources files came from (empty: none needed)."""

    folder: Path
    sources_used: tuple[str, ...]


def default_data_root() -> Path:
    """``$RNNLAB_DATA`` if set, else ``$XDG_CACHE_HOME/rnnlab``, else ``~/.cache/rnnlab``."""
    if override := os.environ.get("RNNLAB_DATA"):
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    base = Path(cache) if Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "rnnlab"


def dataset_dir(dataset: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``dataset``'s files: ``<data_root>/<dataset>``."""
    root = default_data_root() if data_root is None else Path(data_root).expanduser()
    return root / dataset_spec(dataset).name


def fetch_command(dataset: str, data_root: str | os.PathLike | None = None) -> str:
    """The command that repairs ``dataset`` in ``data_root``, for error messages."""
    command = f"rnnlab data fetch --dataset {dataset}"
    if data_root is not None and Path(data_root).expanduser() != default_data_root():
        command += f" --data-dir {shlex.quote(str(data_root))}"
    return command


def fetch(
    dataset: str, data_root: str | os.PathLike | None = None, log: Log = print
) -> FetchResult:
    """Make the four IDX files of ``dataset`` present and verified under ``data_root``.

    Verified local files are kept (no network); missing ones come from the
    data set's sources in order. Writes MANIFEST.json when anything changed.

    Raises:
        UserError: a local file fails verification, the folder is not
            writable, or no source could deliver a missing file.
    """
    spec = dataset_spec(dataset)
    folder = dataset_dir(spec.name, data_root)
    fix = fetch_command(spec.name, data_root)
    recorded = read_manifest(folder, spec, fix) or {}
    entries = {
        f.name: e for f in spec.files if (e := _check_local(folder, f, recorded, spec, fix, log))
    }
    missing = [f for f in spec.files if f.name not in entries]
    if not missing and entries == recorded:
        log(
            f"{spec.title}: all {len(spec.files)} files in {folder} match {MANIFEST_NAME}; "
            "nothing to download"
        )
        log(_ready_line(spec, folder))
        return FetchResult(folder, ())
    used = _fetch_missing(spec, folder, missing, entries, log)
    write_manifest(folder, spec, entries)
    log(_ready_line(spec, folder))
    return FetchResult(folder, used)


def _ready_line(spec: DatasetSpec, folder: Path) -> str:
    return f"{spec.title} ready in {folder} ({spec.num_train} train, {spec.num_test} test images)"


def _check_local(
    folder: Path,
    file: FileSpec,
    recorded: dict[str, ManifestEntry],
    spec: DatasetSpec,
    fix: str,
    log: Log,
) -> ManifestEntry | None:
    """The manifest entry for a good local copy of ``file``; None if absent; UserError if bad."""
    path = folder / file.name
    plain = folder / file.name.removesuffix(".gz")
    if path.exists():
        data = read_file_bytes(path)
        entry = recorded.get(file.name)
        if entry is not None and entry.sha256 == sha256_hex(data):
            return entry
        payload = Payload(data, gzipped=True)
    elif plain.exists():
        payload = Payload(read_file_bytes(plain), gzipped=False)
        path = plain
    else:
        return None
    try:
        stored = verified_bytes(file, payload, str(path), spec)
    except UserError as err:
        raise DataError(f"{err}; delete it and run `{fix}`") from None
    if path == plain:
        _store(folder / file.name, stored)
    log(f"{spec.title}: adopted {path} (matches the official file)")
    return _entry(stored, file, FOUND_LOCALLY)


def _fetch_missing(
    spec: DatasetSpec,
    folder: Path,
    missing: list[FileSpec],
    entries: dict[str, ManifestEntry],
    log: Log,
) -> tuple[str, ...]:
    """Fill ``entries`` with the ``missing`` files from the spec's sources, tried in order."""
    used: list[str] = []
    failures: list[str] = []
    for source in spec.sources:
        wanted = [f for f in missing if f.name not in entries]
        if not wanted:
            break
        log(f"{spec.title}: trying {source.describe()} ...")
        try:
            for name, payload in source.fetch(wanted):
                _accept(spec, folder, name, payload, source.describe(), entries)
        except SourceUnavailable as err:
            log(f"  unavailable: {err}")
            failures.append(f"{source.describe()}: {err}")
        got = [f.name for f in wanted if f.name in entries]
        if got:
            used.append(source.describe())
            log(f"  got {len(got)} file(s) from {source.describe()}")
    still = [f.name for f in missing if f.name not in entries]
    if still:
        raise DataError(
            f"could not fetch {spec.title} ({', '.join(still)}); tried {'; '.join(failures)}. "
            f"Check the network, or copy the official files into {folder} and run the command again"
        )
    return tuple(used)


def _accept(
    spec: DatasetSpec,
    folder: Path,
    name: str,
    payload: Payload,
    origin: str,
    entries: dict[str, ManifestEntry],
) -> None:
    """Verify a delivered file, store it atomically and record it in ``entries``."""
    file = spec.file(name)
    try:
        stored = verified_bytes(file, payload, f"{name} from {origin}", spec)
    except UserError as err:
        # A bad copy condemns this source, not the fetch: the next source may be fine.
        raise SourceUnavailable(str(err)) from None
    _store(folder / name, stored)
    entries[name] = _entry(stored, file, origin)


def verified_bytes(file: FileSpec, payload: Payload, origin: str, spec: DatasetSpec) -> bytes:
    """The gzip bytes to store for ``payload`` once its content matches the official file.

    Raises:
        UserError: bad gzip, an md5 that differs from the official one, or a wrong shape.
    """
    raw = gunzip(payload.data, origin) if payload.gzipped else payload.data
    if md5_hex(raw) != file.raw_md5:
        raise DataError(
            f"{origin}: content differs from the official {spec.title} {file.name} "
            f"(md5 {md5_hex(raw)}, expected {file.raw_md5})"
        )
    shape = decode_idx(raw, origin).shape
    if shape != file.shape:
        raise DataError(f"{origin}: shape {shape}, expected {file.shape}")
    return payload.data if payload.gzipped else gzip_bytes(raw)


def _entry(stored: bytes, file: FileSpec, source: str) -> ManifestEntry:
    return ManifestEntry(sha256_hex(stored), len(stored), file.shape, source)


def _store(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise DataError(
            f"cannot write {path}: {err.strerror or err}; choose another data root "
            "with --data-dir or $RNNLAB_DATA"
        ) from None


def write_manifest(folder: Path, spec: DatasetSpec, entries: dict[str, ManifestEntry]) -> None:
    """Atomically write MANIFEST.json for ``entries`` (one per file of ``spec``)."""
    files = {
        name: {"sha256": e.sha256, "bytes": e.size, "shape": list(e.shape), "source": e.source}
        for name, e in sorted(entries.items())
    }
    try:
        atomic_write_json(
            folder / MANIFEST_NAME,
            {"format": MANIFEST_FORMAT, "dataset": spec.name, "files": files},
        )
    except OSError as err:
        raise DataError(f"cannot write {folder / MANIFEST_NAME}: {err.strerror or err}") from None


def read_manifest(folder: Path, spec: DatasetSpec, fix: str) -> dict[str, ManifestEntry] | None:
    """The entries of ``folder``'s MANIFEST.json, or None if there is none.

    Raises:
        UserError: the manifest is unreadable, not JSON, or not a manifest of ``spec``.
    """
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    damaged = f"{path} is damaged; delete it and run `{fix}` (it re-verifies the files)"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        entries = {name: _parse_entry(value) for name, value in obj["files"].items()}
        dataset, version = obj["dataset"], obj["format"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise DataError(damaged) from None
    if dataset != spec.name or version != MANIFEST_FORMAT:
        raise DataError(damaged)
    return entries


def _parse_entry(value: Any) -> ManifestEntry:
    """A manifest entry from JSON; ValueError/TypeError/KeyError when malformed."""
    sha, size, shape, source = value["sha256"], value["bytes"], value["shape"], value["source"]
    if not (isinstance(sha, str) and isinstance(size, int) and isinstance(source, str)):
        raise TypeError("bad manifest entry")
    if not all(isinstance(d, int) for d in shape):
        raise TypeError("bad manifest shape")
    return ManifestEntry(sha, size, tuple(shape), source)


def verify_file(folder: Path, file: FileSpec, entry: ManifestEntry | None, fix: str) -> np.ndarray:
    """Check one stored file against its manifest entry and the expected shape; return it decoded.

    Raises:
        UserError: naming the file, when it is unrecorded, missing, corrupt or mis-shaped.
    """
    path = folder / file.name
    if not path.exists():
        raise DataError(f"{path} is missing; run `{fix}`")
    if entry is None:
        raise DataError(f"{path} is not recorded in {MANIFEST_NAME}; run `{fix}` to verify it")
    data = read_file_bytes(path)
    if sha256_hex(data) != entry.sha256:
        raise DataError(
            f"{path} is corrupt (its sha256 differs from {MANIFEST_NAME}); "
            f"delete it and run `{fix}`"
        )
    array = decode_idx_file_bytes(data, path)
    if array.shape != file.shape or array.dtype != np.uint8:
        raise DataError(
            f"{path}: {array.dtype} {array.shape}, expected uint8 {file.shape}; "
            f"delete it and run `{fix}`"
        )
    return array


def load_dataset(dataset: str, data_root: str | os.PathLike | None = None) -> MnistArrays:
    """Load a fetched data set, verifying every file against MANIFEST.json first.

    Args:
        dataset: one of :data:`rnnlab.core.data.DATASETS`.
        data_root: the data root; None means :func:`default_data_root`.

    Raises:
        UserError: files missing, never fetched, or corrupt; the message names
            the file and the command that repairs it.
    """
    spec = dataset_spec(dataset)
    folder = dataset_dir(spec.name, data_root)
    fix = fetch_command(spec.name, data_root)
    recorded = read_manifest(folder, spec, fix)
    if recorded is None:
        raise DataError(_no_manifest_message(spec, folder, fix))
    arrays = {f.name: verify_file(folder, f, recorded.get(f.name), fix) for f in spec.files}
    for name in (TRAIN_LABELS, TEST_LABELS):
        if arrays[name].size and arrays[name].max() > 9:
            raise DataError(f"{folder / name}: labels outside 0..9; delete it and run `{fix}`")
    return MnistArrays(
        train_images=torch.from_numpy(arrays[TRAIN_IMAGES]),
        train_labels=torch.from_numpy(arrays[TRAIN_LABELS]).long(),
        test_images=torch.from_numpy(arrays[TEST_IMAGES]),
        test_labels=torch.from_numpy(arrays[TEST_LABELS]).long(),
    )


def _no_manifest_message(spec: DatasetSpec, folder: Path, fix: str) -> str:
    if any((folder / f.name).exists() for f in spec.files):
        return f"{folder} has {spec.title} files but no {MANIFEST_NAME}; run `{fix}` to verify them"
    return f"{spec.title} not found in {folder}; run `{fix}`"


def dataset_present(dataset: str, data_root: str | os.PathLike | None = None) -> bool:
    """Whether any trace of ``dataset`` is on disk: its MANIFEST.json or one of its files.

    A file counts gzipped or plain (a copy ``fetch`` would adopt). False means the
    data set was never fetched here; True means :func:`inspect_dataset` has
    something to verify.
    """
    spec = dataset_spec(dataset)
    folder = dataset_dir(spec.name, data_root)
    names = [MANIFEST_NAME]
    for file in spec.files:
        names += [file.name, file.name.removesuffix(".gz")]
    return any((folder / name).exists() for name in names)


@dataclass(frozen=True)
class FileStatus:
    """One line of ``rnnlab data info``: a file and whether it verified."""

    path: Path
    ok: bool
    detail: str  # "(60000, 28, 28) uint8, 9912422 bytes, sha256 ok" or the problem


def inspect_dataset(dataset: str, data_root: str | os.PathLike | None = None) -> list[FileStatus]:
    """Verify every file of ``dataset`` as :func:`load_dataset` would, collecting all problems."""
    spec = dataset_spec(dataset)
    folder = dataset_dir(spec.name, data_root)
    fix = fetch_command(spec.name, data_root)
    recorded = read_manifest(folder, spec, fix) or {}
    statuses = []
    for file in spec.files:
        path = folder / file.name
        try:
            array = verify_file(folder, file, recorded.get(file.name), fix)
        except UserError as err:
            statuses.append(FileStatus(path, False, str(err)))
            continue
        entry = recorded[file.name]
        detail = f"{array.shape} {array.dtype}, {entry.size} bytes, sha256 ok ({entry.source})"
        statuses.append(FileStatus(path, True, detail))
    return statuses
