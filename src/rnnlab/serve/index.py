"""The finished runs under the folders ``rnnlab serve`` was given, each known by an
opaque id.

A run id is a hash of the run folder's resolved path, never a path: the app looks
ids up in this index and nothing else, so ``..``, absolute paths, encoded variants
and symlinks cannot name a file. The walk does not follow symlinked folders, and a
run (or a figure) whose resolved path leaves the folder it was found under is left
out.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rnnlab.core.errors import UserError
from rnnlab.core.records import RunRecord
from rnnlab.tasks.registry import REGISTRY

SKIPPED_FOLDERS = frozenset({"checkpoints", "figures", "tensorboard", "__pycache__", ".git",
                             ".venv", "node_modules"})
MAX_DEPTH = 12  # folders below a root that are searched for runs
RESCAN_SECONDS = 3.0  # the index is at most this old when the runs are listed
# shown with the run in the list: the settings people compare runs by
KEY_SETTINGS = ("epochs", "batch_size", "lr", "schedule", "seed")
ROBUST_MARK = "robust"  # runs named so (or trained with augment "robust") read drawings well


def run_id(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` resolves to somewhere under ``folder`` (itself resolved)."""
    try:
        return path.resolve(strict=True).is_relative_to(folder)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return False


@dataclass(frozen=True)
class IndexedRun:
    """A finished run found under one of the served folders."""

    id: str
    path: Path  # resolved
    root: Path  # the resolved served folder it was found under
    name: str  # its path relative to the served folder's parent, for people
    config: dict
    summary: dict
    finished: float  # summary.json's modification time

    @property
    def record(self) -> RunRecord:
        return RunRecord(self.path)

    @property
    def task(self) -> str:
        return str(self.config.get("task", "?"))

    def headline(self) -> tuple[str, float | None]:
        try:
            return REGISTRY.get(self.task).headline(self.summary)
        except (UserError, KeyError, TypeError, ValueError):
            return "test accuracy", None

    def figures(self) -> list[Path]:
        """The run's figure files that stay inside the run folder."""
        folder = self.path / "figures"
        if not folder.is_dir() or not inside(folder, self.path):
            return []
        return sorted(p for p in folder.glob("*.png") if p.is_file() and inside(p, self.path))

    def describe(self) -> dict:
        """The run's line in the runs list."""
        model = self.config.get("model") or {}
        train = self.config.get("train") or {}
        metric, value = self.headline()
        return {"id": self.id, "name": self.name, "task": self.task,
                "cell": model.get("cell"), "hidden": model.get("hidden_size"),
                "layers": model.get("num_layers"), "bidirectional": model.get("bidirectional"),
                "settings": {k: train[k] for k in KEY_SETTINGS if k in train},
                "task_settings": self.config.get("task_config") or {},
                "metric": metric, "value": value,
                "date": datetime.fromtimestamp(self.finished, UTC).strftime("%Y-%m-%d %H:%M")}


def read_run(folder: Path, root: Path) -> IndexedRun | None:
    """The finished run in ``folder``, or None (not a run, unfinished, unreadable, or
    resolving outside ``root``)."""
    if not (inside(folder, root) and inside(folder / "config.json", root)
            and inside(folder / "summary.json", root)):
        return None
    record = RunRecord(folder)
    try:
        config, summary = record.config(), record.summary()
        finished = (folder / "summary.json").stat().st_mtime
    except (UserError, OSError):
        return None
    path = folder.resolve()
    return IndexedRun(run_id(path), path, root, str(path.relative_to(root.parent)), config,
                      summary, finished)


def find_runs(root: Path) -> list[IndexedRun]:
    """Every finished run under ``root`` (resolved), without following symlinked folders."""
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders
                               if d not in SKIPPED_FOLDERS and depth < MAX_DEPTH)
        if "config.json" in files and "summary.json" in files:
            run = read_run(Path(folder), root)
            if run is not None:
                found.append(run)
    return found


def offer_order(run: IndexedRun) -> tuple:
    """Runs in the list: by task, robust runs (trained on distorted digits, to read
    drawings) first, then newest first."""
    task_config = run.config.get("task_config")
    augment = task_config.get("augment") if isinstance(task_config, dict) else None
    robust = augment == ROBUST_MARK or ROBUST_MARK in run.name.lower()
    return (run.task, not robust, -run.finished, run.name)


class RunIndex:
    """The runs under ``roots``, rescanned when older than ``RESCAN_SECONDS``."""

    def __init__(self, roots: list[Path], rescan_seconds: float = RESCAN_SECONDS):
        self.roots = [Path(r).resolve() for r in roots]
        self.rescan_seconds = rescan_seconds
        self.runs: dict[str, IndexedRun] = {}
        self.scanned = -float("inf")
        self.lock = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        with self.lock:
            if not force and time.monotonic() - self.scanned < self.rescan_seconds:
                return
            found = [run for root in self.roots if root.is_dir() for run in find_runs(root)]
            self.runs = {run.id: run for run in sorted(found, key=offer_order)}
            self.scanned = time.monotonic()

    def list(self, task: str | None = None) -> list[IndexedRun]:
        self.refresh()
        return [run for run in self.runs.values() if task is None or run.task == task]

    def get(self, run_id: str) -> IndexedRun | None:
        """The run of that id; an unknown id rescans (at most every RESCAN_SECONDS)."""
        if run_id not in self.runs:
            self.refresh()
        return self.runs.get(run_id)
