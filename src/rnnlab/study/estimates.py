"""How long a run will take, from recorded epoch times, for the progress bar of
``rnnlab reproduce``.

In order: the run's own ``timing.csv`` (an interrupted run), the epoch times this
machine recorded for the same configuration (a small JSON file beside the data),
the recorded seconds per unit of work of other configurations times this run's work;
with nothing recorded at all, the work itself (the bar then shows the share of work
done, and its time estimate comes from the elapsed rate).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
from pathlib import Path

from rnnlab.core.backends import train_gflop
from rnnlab.core.data import default_data_root
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.records import RunRecord
from rnnlab.tasks.base import Experiment
from rnnlab.tasks.registry import REGISTRY

CACHE_NAME = "epoch-times.json"


def signature(exp: Experiment) -> str:
    """The configuration an epoch time belongs to (seed aside: it does not change the cost)."""
    train = {k: v for k, v in exp.train.to_dict().items() if k != "seed"}
    text = json.dumps([exp.task, exp.model.to_dict(), train, exp.task_config], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def work(exp: Experiment) -> float:
    """Matmul GFLOP of one training epoch: sequence steps read times GFLOP per step."""
    m = exp.model
    per_step = train_gflop(m.cell, 1, 1, m.input_size, m.hidden_size, m.num_layers, m.directions)
    task = REGISTRY.get(exp.task).from_dict(exp.task_config)
    return task.examples_per_epoch() * task.mean_steps() * per_step


class EpochTimes:
    """Recorded seconds per epoch by configuration signature, kept in ``path``."""

    def __init__(self, path: Path | None = None):
        self.path = path if path is not None else default_data_root() / CACHE_NAME
        self.entries: dict[str, dict] = {}
        try:
            loaded = json.loads(self.path.read_text())
            self.entries = {k: v for k, v in loaded.items()
                            if isinstance(v, dict) and {"seconds", "work"} <= v.keys()}
        except (OSError, ValueError, AttributeError):
            pass  # none recorded yet (or unreadable): estimates fall back to the work

    def rate(self) -> float | None:
        """Recorded seconds per GFLOP of work (the median over configurations)."""
        rates = [e["seconds"] / e["work"] for e in self.entries.values() if e["work"] > 0]
        return statistics.median(rates) if rates else None

    def estimate(self, exp: Experiment, run_dir: Path) -> float:
        """Seconds (or, with nothing recorded, GFLOP) the whole run takes."""
        rate = self.rate()
        if rate is None:
            return work(exp) * exp.train.epochs
        own = RunRecord(run_dir).epoch_seconds()
        entry = self.entries.get(signature(exp))
        per_epoch = (statistics.fmean(own) if own else entry["seconds"] if entry
                     else work(exp) * rate)
        return per_epoch * exp.train.epochs

    def learn(self, exp: Experiment, run_dir: Path) -> None:
        """Record the epoch times a run just left in its folder."""
        seconds = RunRecord(run_dir).epoch_seconds()
        if seconds:
            self.entries[signature(exp)] = {"seconds": statistics.fmean(seconds),
                                            "work": work(exp), "task": exp.task}

    def save(self) -> None:
        with contextlib.suppress(OSError):  # a read-only cache folder costs only an estimate
            atomic_write_json(self.path, self.entries)
