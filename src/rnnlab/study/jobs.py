"""The job runner of ``rnnlab reproduce``: every (experiment, seed) is a job; finished
runs are reused, interrupted ones resume, the rest train one after the other or in
``--jobs N`` one-thread worker processes (longest first). Progress is measured in
seconds estimated from recorded epoch times (:class:`EpochTimes`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rnnlab.core.errors import ConfigError, RunFolderError
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, saved_config
from rnnlab.core.threads import configure_threads
from rnnlab.study.estimates import EpochTimes
from rnnlab.tasks.base import Experiment, Task
from rnnlab.tasks.registry import REGISTRY
from rnnlab.tasks.workflow import draw_run_figures, train_run


@dataclass
class Job:
    exp: Experiment
    seed: int
    plan: RunPlan
    run_id: str  # the run folder relative to OUT/runs
    seconds: float = 0.0  # estimated training time (EpochTimes)


def jobs_of(experiments: list[Experiment], out: Path, force: bool) -> list[Job]:
    jobs = []
    for exp in experiments:
        for seed in exp.seeds:
            plan = exp.plan(out, seed, force)
            jobs.append(Job(exp, seed, plan, str(plan.out.relative_to(out / "runs"))))
    return jobs


def check_existing(jobs: list[Job], force: bool) -> None:
    """Refuse, before training anything, to reuse or resume a run made with other settings."""
    if force:
        return
    for job in jobs:
        record = RunRecord(job.plan.out)
        if (job.plan.out / "config.json").is_file() and saved_config(record) != job.plan.config():
            raise RunFolderError(f"{job.plan.out} was made with other settings (e.g. with or "
                                 "without quick); use another output folder, or force a rerun")


def progress_bar(total: float, quiet: bool) -> tqdm:
    return tqdm(total=total, dynamic_ncols=True, disable=quiet or not sys.stderr.isatty(),
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


@dataclass(frozen=True)
class RunSettings:
    data_dir: str | None = None
    figures: bool = True
    quiet: bool = False  # no progress bar
    workers: int = 1
    force: bool = False
    on_run: Callable[[str], None] | None = None  # receives a line when a run finishes
    device: str = "auto"  # where the models train (core.devices)


def report_trained(job: Job, summary: dict, seconds: float, bar: tqdm,
                   settings: RunSettings) -> dict:
    """Say (to ``settings.on_run``, above the bar) what a run just scored; its status row."""
    metric, value = REGISTRY.get(job.exp.task).headline(summary)
    if settings.on_run is not None:
        line = f"{job.run_id}: {metric} {value:.2f}% ({seconds:.0f}s)"
        with bar.external_write_mode():
            settings.on_run(line)
    return {"run": job.run_id, "status": "trained", "seconds": seconds}


def reusable(job: Job, settings: RunSettings) -> bool:
    """A finished run is reused; figures a kill cut short are drawn again first."""
    record = RunRecord(job.plan.out)
    if settings.force or not record.is_complete:
        return False
    if settings.figures and not record.figures_drawn:
        draw_run_figures(job.plan.out, settings.data_dir)
    return True


def run_all(jobs: list[Job], settings: RunSettings, times: EpochTimes) -> list[dict]:
    """Train every job not yet finished; returns one status row per run."""
    statuses, pending = [], []
    for job in jobs:
        if reusable(job, settings):
            statuses.append({"run": job.run_id, "status": "reused"})
        else:
            job.seconds = times.estimate(job.exp, job.plan.out)
            pending.append(job)
    run = run_parallel if settings.workers > 1 else run_sequential
    statuses += run(pending, settings)
    for job in pending:
        times.learn(job.exp, job.plan.out)
    times.save()
    return statuses


def run_sequential(pending: list[Job], settings: RunSettings) -> list[dict]:
    """Unfinished runs one after the other in this process, with epoch progress."""
    statuses = []
    with progress_bar(sum(j.seconds for j in pending), settings.quiet) as bar:
        for number, job in enumerate(pending, start=1):
            epochs = job.exp.train.epochs
            per_epoch = job.seconds / max(epochs, 1)
            done_before = 0 if settings.force else len(RunRecord(job.plan.out).metrics())
            bar.update(per_epoch * done_before)
            bar.set_description_str(f"[{number}/{len(pending)}] {job.run_id}")
            bar.set_postfix_str(f"epoch {done_before}/{epochs}")

            def on_epoch(row: dict, step=per_epoch, epochs=epochs) -> None:
                bar.update(step)
                bar.set_postfix_str(f"epoch {row['epoch']}/{epochs}")

            started = time.perf_counter()
            summary = train_run(job.plan, data_dir=settings.data_dir, figures=settings.figures,
                                device=settings.device,
                                on_epoch=on_epoch)
            statuses.append(report_trained(job, summary, time.perf_counter() - started, bar,
                                            settings))
    return statuses


def run_parallel(pending: list[Job], settings: RunSettings) -> list[dict]:
    """Unfinished runs in one-thread worker processes, longest first.

    On a 2-core machine two one-thread processes finish about 20% more runs than one
    two-thread process: small recurrent steps do not split well across threads.
    """
    pending = sorted(pending, key=lambda j: -j.seconds)
    for task in {REGISTRY.get(j.exp.task) for j in pending}:
        check_importable(task)
    work = [(i, REGISTRY.get(j.exp.task), j.plan, settings.data_dir, settings.figures,
             settings.device)
            for i, j in enumerate(pending)]
    statuses = []
    # spawn: no forked torch thread pools; die_with_parent: no orphan trains on after a kill -9
    pool = multiprocessing.get_context("spawn").Pool(
        settings.workers, initializer=die_with_parent, initargs=(os.getpid(),))
    with progress_bar(sum(j.seconds for j in pending), settings.quiet) as bar:
        bar.set_description_str(f"{len(pending)} run(s) on {settings.workers} workers")
        try:
            for index, summary, seconds in pool.imap_unordered(train_job, work):
                bar.update(pending[index].seconds)
                statuses.append(report_trained(pending[index], summary, seconds, bar, settings))
        except BaseException:
            # unfinished runs keep their last completed epoch (atomic writes) and resume next time
            pool.terminate()
            raise
        finally:
            pool.close()
            pool.join()
    return statuses


def check_importable(task: type[Task]) -> None:
    """Worker processes import a job's task class by module and name; a class defined in
    ``__main__`` (a notebook cell, a script) cannot be, and the pool would wait forever."""
    module = sys.modules.get(task.__module__)
    spec = getattr(module, "__spec__", None)
    if task.__module__ == "__main__" or spec is None or \
            getattr(module, task.__qualname__, None) is not task:
        raise ConfigError("jobs", f"above 1 needs the {task.name} task importable by worker "
                          f"processes; {task.__qualname__} is defined in {task.__module__}: "
                          "move it into a module, or train with one job")


def train_job(work: tuple[int, type[Task], RunPlan, str | None, bool, str]
              ) -> tuple[int, dict, float]:
    """One run in a worker process (module-level: it is pickled). The task class travels
    with the job, so tasks registered outside the package train in workers too."""
    index, task_class, plan, data_dir, figures, device = work
    if task_class.name not in REGISTRY.names():
        REGISTRY.register(task_class)
    configure_threads(1)
    started = time.perf_counter()
    summary = train_run(plan, data_dir=data_dir, figures=figures, on_epoch=None, device=device)
    return index, summary, time.perf_counter() - started


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 0.2


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: a worker must not outlive ``rnnlab reproduce``, even a kill -9 of it,
    or a rerun would train the same run in the same folder beside the orphan."""
    try:  # Linux: the kernel kills the worker the moment its parent dies
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError, TypeError):
        pass  # elsewhere the watcher below does it within PARENT_POLL_SECONDS
    threading.Thread(target=exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # also catches a parent that died before prctl
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One reproduction at a time per output folder (the lock dies with its process)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".reproduce.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"another rnnlab reproduce is writing {out}; wait for it or "
                                 "use another output folder") from None
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` stops like Ctrl-C: atomic writes in progress clean up, finished epochs stay."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous: Callable | int | None = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
