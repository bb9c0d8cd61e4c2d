"""``rnnlab reproduce``: every experiment of the registered tasks, then the report.

Profiles: ``reference`` runs the exercise's own settings with its flaws fixed
(``ablations`` adds runs that put each flaw back, to measure what fixing it changed);
``tuned`` runs rnnlab's best recipe for each task over several seeds. ``quick``
runs every configuration on a tiny budget (a first look, CI).

Layout of the output folder::

    reproduce.json                      the experiments (ids, labels, reference numbers, flaws)
    runs/<profile>/<task>/<name>/seed-<s>/   one run record per experiment and seed
    report.md, report.html, figures/    written from the records (``rnnlab report`` redoes it)

A run whose ``summary.json`` exists is finished and reused; an interrupted run
resumes from its last completed epoch; ``force`` reruns everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnlab.core.devices import resolve_device
from rnnlab.core.errors import check
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.threads import configure_threads
from rnnlab.study.estimates import EpochTimes
from rnnlab.study.experiments import OTHER_PROFILES, PROFILES, catalogue, flaws_of
from rnnlab.study.jobs import (
    RunSettings,
    check_existing,
    folder_lock,
    jobs_of,
    run_all,
    sigterm_as_interrupt,
)
from rnnlab.study.report import build_report
from rnnlab.tasks.base import REFERENCE_SEED, Experiment
from rnnlab.tasks.registry import REGISTRY


@dataclass(frozen=True)
class ReproduceOptions:
    profile: str = "reference"  # "reference" | "tuned" | "all"
    quick: bool = False
    tasks: tuple[str, ...] | None = None  # None: every registered task
    ablations: bool | None = None  # None: on with quick and with profile "all"
    seeds: int = 3  # seeds per tuned configuration
    seed: int = REFERENCE_SEED  # the first seed
    out: str = "reports/reference"
    force: bool = False
    threads: int | None = None
    jobs: int = 1  # runs trained at once, each in its own one-thread process
    figures: bool = True
    quiet: bool = False  # no progress bar
    data_dir: str | None = None
    on_run: Callable[[str], None] | None = None  # receives a line as each run finishes
    device: str = "auto"  # where the models train: auto, cpu, cuda, cuda:N, mps

    def __post_init__(self) -> None:
        names = (*PROFILES, *OTHER_PROFILES, "all")
        check(self.profile in names, "profile",
              f"{self.profile!r} is unknown; choose one of {', '.join(names)}")
        check(self.seeds >= 1, "seeds", f"must be >= 1, got {self.seeds}")
        check(self.jobs >= 1, "jobs", f"must be >= 1, got {self.jobs}")
        for name in self.tasks or ():
            REGISTRY.get(name)  # an unknown task is refused before anything runs
        resolve_device(self.device)  # so is a device this machine lacks

    @property
    def with_ablations(self) -> bool:
        return self.ablations if self.ablations is not None else (
            self.quick or self.profile == "all")


@dataclass(frozen=True)
class ReproduceResult:
    trained: int
    reused: int
    seconds: float
    report: tuple[Path, Path]  # report.md, report.html


def reproduce(options: ReproduceOptions) -> ReproduceResult:
    """Train every experiment of ``options`` not yet finished, then write the report."""
    configure_threads(options.threads)
    out = Path(options.out)
    experiments = catalogue(options.profile, options.quick, options.seeds, options.seed,
                            options.with_ablations, options.tasks)
    with folder_lock(out), sigterm_as_interrupt():
        jobs = jobs_of(experiments, out, options.force)
        check_existing(jobs, options.force)  # before anything is written
        write_manifest(out, options, experiments)
        started = time.perf_counter()
        settings = RunSettings(options.data_dir, options.figures, options.quiet, options.jobs,
                               options.force, options.on_run, options.device)
        statuses = run_all(jobs, settings, EpochTimes())
        seconds = time.perf_counter() - started
        paths = build_report(out, data_dir=options.data_dir)
    trained = sum(s["status"] == "trained" for s in statuses)
    return ReproduceResult(trained, len(statuses) - trained, seconds, paths)


def write_manifest(out: Path, options: ReproduceOptions, experiments: list[Experiment]) -> None:
    """reproduce.json: this command's experiments, keeping other profiles already in the folder."""
    path = out / "reproduce.json"
    current = {(e.profile, e.task) for e in experiments}
    kept: list[dict] = []
    if path.is_file():  # keep the (profile, task) pairs this command does not run
        try:
            previous = json.loads(path.read_text())
            kept = [e for e in previous.get("experiments", [])
                    if (e.get("profile"), e.get("task")) not in current]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            kept = []
    atomic_write_json(path, {
        "format": "rnnlab-reproduce-v1", "profile": options.profile, "quick": options.quick,
        "seeds": options.seeds, "ablations": options.with_ablations,
        "flaws": [f.describe() for f in flaws_of()],
        "experiments": kept + [{**e.describe(out), "quick": options.quick} for e in experiments]})
