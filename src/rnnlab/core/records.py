"""Run records: everything a run leaves in its folder, and the only thing plots
and reports read.

Layout of a run folder::

    config.json          resolved config (task, model, training, data, versions)
    metrics.csv/.jsonl   one row per epoch; deterministic for a given seed
    timing.csv           wall-clock seconds per epoch (kept apart so metrics stay byte-identical)
    checkpoints/best.pt  best-validation weights + plain config (weights_only-loadable)
    checkpoints/last.pt  last epoch: weights, optimizer, scheduler, RNG states (for --resume)
    summary.json         test metrics; its presence marks the run complete
    figures/*.png        drawn from the files above only
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rnnlab.core.errors import CheckpointError, RunFolderError
from rnnlab.core.fileio import atomic_open, atomic_write_json, atomic_write_text

CHECKPOINT_FORMAT = "rnnlab-checkpoint-v1"
FIGURES_DRAWN = ".drawn"  # in figures/: written last, lists the figures drawn
# Every file a training run writes in its folder (the tasks' extras included), for --force
RUN_OUTPUTS = ("metrics.csv", "metrics.jsonl", "timing.csv", "summary.json", "test_predictions.csv",
               "examples.json", "test_by_epoch.jsonl", "permutation.json", "gradients.json",
               f"figures/{FIGURES_DRAWN}")
RUN_OUTPUT_GLOBS = ("checkpoints/*.pt", "figures/*.png", "tensorboard/events.out.tfevents.*")


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    fields = list(rows[0])
    for row in rows[1:]:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class RunRecord:
    """Reads and writes one run folder; every write is atomic."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)

    # -- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | Path, config: dict, force: bool = False) -> RunRecord:
        """A fresh run folder; refuses to overwrite an existing run unless ``force``."""
        record = cls(run_dir)
        if record.dir.exists() and any(record.dir.iterdir()) and not force:
            raise RunFolderError(
                f"run folder {record.dir} already exists; set `force` to overwrite it "
                "or `resume` to continue it"
            )
        if force and record.dir.exists():
            record.remove_outputs()
        record.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record.dir / "config.json", config)
        return record

    def remove_outputs(self) -> None:
        """Delete what a training run writes (``--force``): nothing of the last run survives
        into the new one; files rnnlab did not make stay."""
        for name in RUN_OUTPUTS:
            (self.dir / name).unlink(missing_ok=True)
        for pattern in RUN_OUTPUT_GLOBS:
            for path in self.dir.glob(pattern):
                path.unlink()

    @classmethod
    def open(cls, run_dir: str | Path) -> RunRecord:
        """An existing run folder; a one-line error when it is not one."""
        record = cls(run_dir)
        if not (record.dir / "config.json").is_file():
            raise RunFolderError(f"{record.dir} is not an rnnlab run folder (no config.json)")
        return record

    # -- config and summary -------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def figures_dir(self) -> Path:
        return self.dir / "figures"

    @property
    def figures_drawn(self) -> bool:
        """Every figure of the finished run was drawn (a kill while drawing leaves no mark)."""
        return (self.figures_dir / FIGURES_DRAWN).is_file()

    def draw_figures(self, draw: Callable[[RunRecord], list[Path]]) -> list[Path]:
        """``draw(self)``, then the mark that says the figures are complete."""
        (self.figures_dir / FIGURES_DRAWN).unlink(missing_ok=True)
        for tmp in self.figures_dir.glob(".*.tmp"):  # a figure write a kill cut short
            tmp.unlink(missing_ok=True)
        paths = draw(self)
        self.figures_dir.mkdir(exist_ok=True)
        atomic_write_text(self.figures_dir / FIGURES_DRAWN,
                          "".join(f"{p.name}\n" for p in paths if p is not None))
        return paths

    def read_json(self, name: str) -> dict:
        path = self.dir / name
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{path} is not valid JSON ({err}); "
                                 "delete the run and train again") from None
        if not isinstance(data, dict):
            raise RunFolderError(f"{path} is not a JSON object; delete the run and train again")
        return data

    def config(self) -> dict:
        return self.read_json("config.json")

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.dir / "summary.json", summary)

    def summary(self) -> dict:
        return self.read_json("summary.json")

    @property
    def is_complete(self) -> bool:
        return (self.dir / "summary.json").is_file()

    # -- per-epoch metrics --------------------------------------------------------
    def write_metrics(self, rows: list[dict[str, Any]], timings: list[dict[str, Any]]) -> None:
        """Rewrite the per-epoch files whole (they are small), so each is always complete."""
        atomic_write_text(self.dir / "metrics.csv", rows_to_csv(rows))
        self.write_jsonl("metrics.jsonl", rows)
        atomic_write_text(self.dir / "timing.csv", rows_to_csv(timings))

    def metrics(self) -> list[dict[str, Any]]:
        return self.read_jsonl("metrics.jsonl")

    def epoch_seconds(self) -> list[float]:
        """Wall-clock seconds of each recorded epoch (timing.csv; [] when absent)."""
        path = self.dir / "timing.csv"
        try:
            with path.open(newline="") as fh:
                return [float(row["seconds"]) for row in csv.DictReader(fh)]
        except (OSError, KeyError, ValueError):
            return []

    def write_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        """One JSON object per line, the whole file rewritten atomically."""
        atomic_write_text(self.dir / name,
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """The rows of a JSON-lines file of this run ([] when it is absent)."""
        path = self.dir / name
        if not path.is_file():
            return []
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{path} is corrupt ({err})") from None

    # -- checkpoints --------------------------------------------------------------
    def save_checkpoint(self, name: str, payload: dict) -> Path:
        path = self.checkpoint_dir / f"{name}.pt"
        with atomic_open(path, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, fh)
        return path

    def remove_stale_temp_files(self) -> None:
        """Delete the temp files of atomic writes cut short by a kill (``.NAME.*.tmp``)."""
        for folder in (self.dir, self.checkpoint_dir, self.figures_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def has_checkpoint(self, name: str) -> bool:
        return (self.checkpoint_dir / f"{name}.pt").is_file()

    def load_checkpoint(self, name: str) -> dict:
        return load_checkpoint_file(self.checkpoint_dir / f"{name}.pt")


def error_detail(err: BaseException, limit: int = 200) -> str:
    """The informative line of a (often multi-line) library error, for a one-line message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.endswith(":")]  # skip "Error(s) in loading ...:"
    return ((useful or lines or [type(err).__name__])[0])[:limit]


def load_checkpoint_file(path: Path) -> dict:
    """Load with ``weights_only=True``: tensors and plain containers only, no code runs.

    Whatever the bytes, the only exception that escapes is a one-line CheckpointError.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing; train the run first")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: not for the user
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is many lines; keep the name of the refused global, if any.
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused is None:
            raise CheckpointError(f"checkpoint {path} is corrupt (not a weights-only pickle); "
                                  "delete it and train again") from None
        raise CheckpointError(f"refusing checkpoint {path}: "
                              f"it holds a pickled object ({refused.group(1)}), "
                              "not only weights; "
                              "rnnlab never runs code from a checkpoint") from None
    except Exception as err:  # any failure to parse untrusted bytes means "corrupt"
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}); "
                              "delete it and train again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rnnlab checkpoint")
    return payload
