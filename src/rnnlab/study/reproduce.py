"""``rnnlab reproduce``: every configuration of the exercise, then the report.

Profiles: ``reference`` runs the exercise's own settings with its flaws fixed
(``--ablations`` adds runs that put each flaw back, to measure what fixing it changed);
``tuned`` runs rnnlab's best recipe for each task over several seeds. ``--quick``
runs every configuration on a tiny budget (a first look, CI).

Layout of the output folder::

    reproduce.json                      the experiments (ids, labels, reference numbers, flaws)
    runs/<profile>/<task>/<name>/seed-<s>/   one run record per experiment and seed
    report.md, report.html, figures/    written from the records (``rnnlab report`` redoes it)

A run whose ``summary.json`` exists is finished and reused; an interrupted run
resumes from its last completed epoch; ``--force`` reruns everything.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from rnnlab.study import reference
from rnnlab.core.data.split import MNIST_NUM_VALID
from rnnlab.core.errors import UserError
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.cells import get_cell
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, saved_config
from rnnlab.tasks import draw_run_figures, task_module
from rnnlab.core.train import TrainConfig, configure_threads

PROFILES = ("reference", "tuned")
TASKS = ("mnist", "recall", "addition")
QUICK_EPOCHS = 2  # two points on every curve, still seconds per run
REFERENCE_SEED = 2111


@dataclass(frozen=True)
class Experiment:
    """One configuration of the exercise, trained once per seed."""

    task: str  # "mnist" | "recall" | "addition"
    name: str  # short id within the task, e.g. "bilstm", "hidden-10", "h5-bce"
    label: str  # how tables and legends name it
    profile: str  # "reference" | "tuned"
    model_kind: str
    model: ModelConfig
    train: TrainConfig
    task_config: dict
    reference: float | None = None  # the exercise's reported number, percent
    note: str = ""  # what differs from the reference and why
    seeds: tuple[int, ...] = field(default=(REFERENCE_SEED,))
    role: str = "main"  # "main": a row of the task's table; "ablation": a flaw put back
    baseline: str | None = None  # ablations: the main experiment it is compared with
    flaw: str | None = None  # ablations: the id of the flaw (in FLAWS) it measures
    reference_curve: tuple[float, ...] | None = None  # MNIST: the reference's validation accuracy
    target: float | None = None  # tuned: the accuracy the task issue asks for, percent

    @property
    def id(self) -> str:
        return f"{self.profile}/{self.task}/{self.name}"

    def run_dir(self, out: Path, seed: int) -> Path:
        return out / "runs" / self.profile / self.task / self.name / f"seed-{seed}"

    def plan(self, out: Path, seed: int, force: bool) -> RunPlan:
        return RunPlan(self.run_dir(out, seed), self.task, self.model_kind, self.model,
                       replace(self.train, seed=seed), self.task_config, force=force,
                       resume=not force, quiet=True)

    def describe(self, out: Path) -> dict:
        return {"id": self.id, "task": self.task, "name": self.name, "label": self.label,
                "profile": self.profile, "role": self.role, "baseline": self.baseline, "flaw": self.flaw,
                "reference": self.reference, "reference_curve": self.reference_curve,
                "target": self.target, "note": self.note, "model": self.model.to_dict(),
                "train": self.train.to_dict(), "task_config": self.task_config, "seeds": list(self.seeds),
                "runs": [str(self.run_dir(out, s).relative_to(out)) for s in self.seeds]}


# The exercise's flaws (../shared/spec/assignment.md), each with the fix rnnlab applies.
# The report pairs each with what the records measured.
FLAWS = [
    {"id": "bidirectional-readout", "task": "mnist",
     "flaw": "The bidirectional models classified from the output at the last time step; for the "
             "backward direction that output has seen only the last row.",
     "fix": "rnnlab reads the final hidden state h_n of each direction."},
    {"id": "hard-coded-batch", "task": "mnist",
     "flaw": "The output was reshaped to a hard-coded batch of 500, so any other batch size "
             "(or a last partial batch) breaks.",
     "fix": "rnnlab never assumes a batch size: every shape comes from the batch itself."},
    {"id": "rnn-unclipped", "task": "mnist",
     "flaw": "The vanilla RNN at lr 0.01 without gradient clipping is unstable (validation "
             "accuracy goes down between epochs).",
     "fix": "rnnlab clips the RNNs' global gradient norm to 1.0 (reference profile)."},
    {"id": "constant-lr", "task": "mnist",
     "flaw": "Adam ran at a constant learning rate of 0.01 to the end, so the last epochs bounce "
             "(the reference's LSTM, GRU and BiLSTM validation curves also go down between epochs).",
     "fix": "rnnlab keeps Adam at 0.01 but decays it to 0 with a cosine schedule over the run."},
    {"id": "valid-accuracy-over-100", "task": "mnist",
     "flaw": "Validation accuracy was computed as correct/100, a percentage only because the "
             "validation set has exactly 10,000 images.",
     "fix": "rnnlab divides by the number of images scored."},
    {"id": "multiclass-ce", "task": "addition",
     "flaw": "The \"cross-entropy\" run applied a multi-class cross-entropy across the time axis "
             "to sigmoid outputs.",
     "fix": "rnnlab uses binary cross-entropy on the logits (one bit per step)."},
    {"id": "fixed-length-not-used", "task": "addition",
     "flaw": "The \"trained only on L = 3 / 5 / 10\" runs were in fact trained on the mixed 1..20 "
             "set (the fixed-length sets were never passed in).",
     "fix": "rnnlab really trains on the one length and scores every length 1..20."},
    {"id": "swapped-legends", "task": "addition",
     "flaw": "The legends of two comparison plots were swapped.",
     "fix": "rnnlab writes every legend from the run's config.json (hidden size, loss, lengths)."},
    {"id": "mse-collapse", "task": "addition",
     "flaw": "Identical 92.09% for several different models suggests the MSE runs collapsed to a "
             "trivial solution.",
     "fix": "rnnlab reports bit and whole-number accuracy per length, so a collapse is visible."},
]


# -- Task 1 ---------------------------------------------------------------------------
MNIST_MODELS = {  # name: (cell, hidden, bidirectional, reference epochs)
    "rnn": ("rnn", 128, False, 5), "lstm": ("lstm", 100, False, 7), "gru": ("gru", 128, False, 7),
    "birnn": ("rnn", 128, True, 5), "bilstm": ("lstm", 100, True, 7), "bigru": ("gru", 128, True, 7),
}
QUICK_MNIST_EXAMPLES = 2000  # train, validation and test images each


def mnist_label(cell: str, bidirectional: bool) -> str:
    return ("Bi" if bidirectional else "") + cell.upper()


def mnist_reference_experiment(name: str, quick: bool, seed: int) -> Experiment:
    cell, hidden, bidirectional, epochs = MNIST_MODELS[name]
    task = {"dataset": "mnist", "num_valid": MNIST_NUM_VALID, "augment_shift": 0,
            "limit": QUICK_MNIST_EXAMPLES if quick else None}
    clip = 1.0 if cell == "rnn" else None  # the reference's RNN was unstable without it
    # Adam 0.01 as the reference, decayed to 0 by a cosine: at a constant 0.01 the last
    # epochs bounce (the reference's validation curves go down between epochs).
    train = TrainConfig(epochs=QUICK_EPOCHS if quick else epochs, batch_size=500, lr=0.01, clip=clip,
                        schedule="cosine", seed=seed)
    model = ModelConfig(cell=cell, input_size=28, hidden_size=hidden, bidirectional=bidirectional)
    ref = reference.MNIST[name]
    note = "h_n readout; Adam 0.01 with cosine decay" + ("; gradient clipping 1.0" if clip else "")
    if ref is None:
        note += "; not run by the reference"
    return Experiment("mnist", name, mnist_label(cell, bidirectional), "reference", "classifier", model,
                      train, task, ref["test"] if ref else None, note, (seed,),
                      reference_curve=tuple(ref["valid_by_epoch"]) if ref else None)


def mnist_experiments(profile: str, quick: bool, seeds: tuple[int, ...], ablations: bool) -> list[Experiment]:
    experiments = []
    for name, (cell, _, bidirectional, _) in MNIST_MODELS.items():
        base = mnist_reference_experiment(name, quick, seeds[0])
        if profile == "reference":
            experiments.append(base)
            continue
        model, train, task, note = tuned_mnist(cell, bidirectional, quick, base.task_config)
        experiments.append(replace(base, profile="tuned", model=model, train=train, task_config=task,
                                   note=note, seeds=seeds, reference_curve=None,
                                   target=reference.TUNED_TARGETS["mnist"].get(name)))
    if profile == "reference" and ablations:
        experiments += mnist_ablations(quick, seeds[0])
    return experiments


def mnist_ablations(quick: bool, seed: int) -> list[Experiment]:
    """The reference's flaws put back, one at a time, to measure what fixing each changed."""
    ablations = []
    for name in ("birnn", "bilstm"):
        base = mnist_reference_experiment(name, quick, seed)
        ablations.append(replace(
            base, name=f"{name}-last-step", label=f"{base.label}, last-step readout",
            model=replace(base.model, readout="last_step"), role="ablation", baseline=name,
            flaw="bidirectional-readout", reference_curve=None,
            note="the reference's readout: the output at the last time step (flawed)"))
    for name in ("lstm", "gru"):
        base = mnist_reference_experiment(name, quick, seed)
        ablations.append(replace(
            base, name=f"{name}-constant-lr", label=f"{base.label}, constant lr",
            train=replace(base.train, schedule="constant"), role="ablation", baseline=name,
            flaw="constant-lr", reference_curve=None,
            note="the reference's schedule: Adam at a constant 0.01 (no decay)"))
    base = mnist_reference_experiment("rnn", quick, seed)
    ablations.append(replace(
        base, name="rnn-no-clip", label="RNN, no gradient clipping", train=replace(base.train, clip=None),
        role="ablation", baseline="rnn", flaw="rnn-unclipped", reference_curve=None,
        note="the reference's setting: lr 0.01 without gradient clipping (flawed)"))
    return ablations


def tuned_mnist(cell: str, bidirectional: bool, quick: bool, task: dict):
    """rnnlab's tuned MNIST recipe (the one place it is defined): (model, train, task, note).

    Measured here (seed 2111): LSTM(128) 15 epochs 99.18% test; RNN(128) 15 epochs 97.6%
    validation, so the vanilla RNNs get 20 epochs and smaller shifts (their capacity is
    the limit, not overfitting).
    """
    gated = cell != "rnn"
    hidden, epochs, shift = 128, (15 if gated else 20), (2 if gated else 1)
    model = ModelConfig(cell=cell, input_size=28, hidden_size=hidden, bidirectional=bidirectional,
                        dropout=0.1 if gated else 0.0)
    train = TrainConfig(epochs=QUICK_EPOCHS if quick else epochs, batch_size=128,
                        lr=3e-3 if gated else 2e-3, schedule="onecycle", clip=1.0)
    task = {**task, "augment_shift": 0 if quick else shift}
    note = (f"hidden {hidden}, dropout {model.dropout}, Adam one-cycle peak {train.lr}, clip 1.0, "
            f"random shifts up to {shift} px, batch 128, {epochs} epochs")
    return model, train, task, note


# -- Task 2 ---------------------------------------------------------------------------
RECALL_HIDDEN = (2, 5, 10)


def recall_experiments(profile: str, quick: bool, seeds: tuple[int, ...]) -> list[Experiment]:
    from rnnlab.tasks import recall

    experiments = []
    for hidden in RECALL_HIDDEN:
        if profile == "reference":
            task, train, note = recall.REFERENCE_TASK, replace(recall.REFERENCE_TRAIN, seed=seeds[0]), \
                "the reference's settings"
        else:
            task, train = recall.tuned_recipe(hidden)
            note = (f"the recall module's tuned recipe: {task.data} data, {task.train_size} sequences per epoch, "
                    f"batch {train.batch_size}, lr {train.lr} {train.schedule}, {train.epochs} epochs, "
                    f"{task.test_size} test sequences")
        if quick:
            train_size, valid_size, test_size = recall.DRY_RUN_SIZES  # and two batches at least
            task = replace(task, train_size=max(train_size, 2 * train.batch_size), valid_size=valid_size,
                           test_size=test_size)
            train = replace(train, epochs=QUICK_EPOCHS)
        target = reference.TUNED_TARGETS["recall"].get(hidden) if profile == "tuned" else None
        experiments.append(Experiment(
            "recall", f"hidden-{hidden}", f"LSTM hidden {hidden}", profile, "classifier",
            replace(recall.REFERENCE_MODEL, hidden_size=hidden), train, asdict(task),
            reference.RECALL.get(hidden), note, seeds[:1] if profile == "reference" else seeds, target=target))
    return experiments


# -- Task 3 ---------------------------------------------------------------------------
# (name, hidden, loss, training lengths): the exercise's experiments, names as in rnnlab.study.reference
ADDITION_REFERENCE = [
    ("h3-mse", 3, "mse", "1-20"), ("h10-mse", 10, "mse", "1-20"), ("h5-mse", 5, "mse", "1-20"),
    ("h5-bce", 5, "bce", "1-20"), ("h5-mse-len3", 5, "mse", "3"), ("h5-mse-len5", 5, "mse", "5"),
    ("h5-mse-len10", 5, "mse", "10"),
]


def addition_label(hidden: int, loss: str, lengths: str) -> str:
    loss_name = {"mse": "MSE", "bce": "BCE"}.get(loss, loss)
    trained = "" if lengths == "1-20" else f", trained on L = {lengths}"
    return f"hidden {hidden}, {loss_name}{trained}"


def addition_experiments(profile: str, quick: bool, seeds: tuple[int, ...], ablations: bool) -> list[Experiment]:
    from rnnlab.tasks import addition

    shrink = addition.DRY_RUN if quick else {}
    if profile == "tuned":
        task = {**addition.TUNED_TASK.to_dict(), **shrink}
        train = replace(addition.TUNED_TRAIN, epochs=QUICK_EPOCHS) if quick else addition.TUNED_TRAIN
        model = addition.TUNED_MODEL
        cfg = addition.TUNED_TASK
        note = (f"the addition module's tuned recipe: hidden {model.hidden_size}, {cfg.loss.upper()}, "
                f"{cfg.data} data ({cfg.train_size} pairs per epoch), batch {train.batch_size}, trained on "
                f"L = {cfg.train_lengths}, scored at {cfg.eval_lengths}")
        return [Experiment("addition", "tuned", addition_label(model.hidden_size, cfg.loss, cfg.train_lengths),
                           "tuned", "per_step", model, train, task, reference.ADDITION["h5-bce"],
                           note + "; compared with the reference's best run (hidden 5, \"cross-entropy\")",
                           seeds, target=reference.TUNED_TARGETS["addition"]["whole_number"])]
    train = replace(addition.REFERENCE_TRAIN, seed=seeds[0], epochs=QUICK_EPOCHS if quick else
                    addition.REFERENCE_TRAIN.epochs)
    experiments = []
    for name, hidden, loss, lengths in ADDITION_REFERENCE:
        task = {**replace(addition.REFERENCE_TASK, loss=loss, train_lengths=lengths).to_dict(), **shrink}
        note = "binary cross-entropy on the logits" if loss == "bce" else "the reference's loss"
        if lengths != "1-20":
            note += f"; really trained on L = {lengths} only"
        experiments.append(Experiment("addition", name, addition_label(hidden, loss, lengths), "reference",
                                      "per_step", replace(addition.REFERENCE_MODEL, hidden_size=hidden),
                                      train, task, reference.ADDITION[name], note, seeds[:1]))
    if ablations:
        base = next(e for e in experiments if e.name == "h5-bce")
        experiments.append(replace(
            base, name="h5-multiclass-ce", label="hidden 5, multiclass-ce (the reference's loss)",
            task_config={**base.task_config, "loss": "multiclass-ce"}, role="ablation", baseline="h5-bce",
            flaw="multiclass-ce", note="the reference's \"cross-entropy\": multi-class over time (flawed)"))
    return experiments


# -- the whole list -------------------------------------------------------------------
def all_experiments(profile: str, quick: bool, seeds: int, first_seed: int = REFERENCE_SEED,
                    ablations: bool = True, tasks: tuple[str, ...] = TASKS) -> list[Experiment]:
    profiles = PROFILES if profile == "all" else (profile,)
    seed_list = tuple(first_seed + i for i in range(seeds))
    experiments = []
    for p in profiles:
        if "mnist" in tasks:
            experiments += mnist_experiments(p, quick, seed_list, ablations)
        if "recall" in tasks:
            experiments += recall_experiments(p, quick, seed_list)
        if "addition" in tasks:
            experiments += addition_experiments(p, quick, seed_list, ablations)
    return experiments


# -- running --------------------------------------------------------------------------
def train_function(task: str) -> Callable[..., dict]:
    """The task's ``train_plan(plan, *, data_dir, figures, on_epoch)``."""
    return task_module(task).train_plan


def epoch_cost(exp: Experiment) -> float:
    """A rough relative cost of one training epoch, in seconds; only for the progress ETA."""
    cfg, t = exp.task_config, exp.train
    if exp.task == "mnist":
        examples = cfg.get("limit") or 60_000 - cfg.get("num_valid", MNIST_NUM_VALID)
        steps = 28.0
    elif exp.task == "recall":
        examples, steps = cfg.get("train_size", 800), (cfg.get("min_length", 3) + cfg.get("max_length", 10)) / 2
    else:
        from rnnlab.tasks.addition import parse_lengths

        lengths = parse_lengths(cfg.get("train_lengths", "1-20"))
        examples, steps = cfg.get("train_size", 250), sum(lengths) / len(lengths)
    m = exp.model
    gates = get_cell(m.cell).num_gates
    batches = -(-examples // t.batch_size)
    per_step = 4e-5 * m.directions + t.batch_size * gates * m.hidden_size * (m.hidden_size + m.input_size) * \
        m.directions * 6 / 3e10
    return batches * (1e-3 + steps * per_step)


@dataclass
class Job:
    exp: Experiment
    seed: int
    plan: RunPlan
    run_id: str


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
        if (job.plan.out / "config.json").is_file() and saved_config(RunRecord(job.plan.out)) != job.plan.config():
            raise UserError(f"{job.plan.out} was made with other settings (e.g. with or without --quick); "
                            "use another --out, or --force to rerun")


def progress(jobs: list[Job], quiet: bool) -> tqdm:
    total = sum(epoch_cost(j.exp) * j.exp.train.epochs for j in jobs)
    return tqdm(total=total, dynamic_ncols=True, disable=quiet or not sys.stderr.isatty(),
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


def train_job(index: int, task: str, plan: RunPlan, data_dir: str | None, figures: bool) -> tuple[int, dict, float]:
    """One run in a one-thread worker process of ``--jobs N`` (module-level: it is pickled)."""
    configure_threads(1)
    started = time.perf_counter()
    summary = train_function(task)(plan, data_dir=data_dir, figures=figures, on_epoch=None)
    return index, summary, time.perf_counter() - started


def run_parallel(pending: list[Job], workers: int, data_dir: str | None, figures: bool,
                 quiet: bool) -> list[dict]:
    """Unfinished runs in ``workers`` one-thread processes, longest first.

    On this kind of machine two one-thread processes finish about 20% more runs than
    one two-thread process: small recurrent steps do not split well across threads.
    """
    pending = sorted(pending, key=lambda j: -epoch_cost(j.exp) * j.exp.train.epochs)
    tasks = [(i, j.exp.task, j.plan, data_dir, figures) for i, j in enumerate(pending)]
    statuses = []
    # spawn: no forked torch thread pools; die_with_parent: no orphan trains on after a kill -9
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))
    with progress(pending, quiet) as bar:
        bar.set_description_str(f"{len(pending)} run(s) on {workers} workers")
        try:
            for index, summary, seconds in pool.imap_unordered(train_job_star, tasks):
                job = pending[index]
                bar.update(epoch_cost(job.exp) * job.exp.train.epochs)
                statuses.append(report_trained(job, summary, seconds, bar))
        except BaseException:
            # unfinished runs keep their last completed epoch (atomic writes) and resume next time
            pool.terminate()
            raise
        finally:
            pool.close()
            pool.join()
    return statuses


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


def reusable(job: Job, force: bool, figures: bool, data_dir: str | None) -> bool:
    """A finished run is reused; figures a kill cut short are drawn again first."""
    record = RunRecord(job.plan.out)
    if force or not record.is_complete:
        return False
    if figures and not record.figures_drawn:
        draw_run_figures(job.exp.task, job.plan.out, data_dir)
    return True


def train_job_star(args: tuple) -> tuple[int, dict, float]:
    return train_job(*args)


def run_all(jobs: list[Job], force: bool, data_dir: str | None, figures: bool, quiet: bool,
            workers: int = 1) -> list[dict]:
    """Train every (experiment, seed) not yet finished; returns one status row per run."""
    statuses, pending = [], []
    for job in jobs:
        if reusable(job, force, figures, data_dir):
            statuses.append({"run": job.run_id, "status": "reused"})
        else:
            pending.append(job)
    if workers > 1:
        return statuses + run_parallel(pending, workers, data_dir, figures, quiet)
    return statuses + run_sequential(pending, force, data_dir, figures, quiet)


def run_sequential(pending: list[Job], force: bool, data_dir: str | None, figures: bool,
                   quiet: bool) -> list[dict]:
    """Unfinished runs one after the other in this process, with epoch progress."""
    statuses = []
    with progress(pending, quiet) as bar:
        for number, job in enumerate(pending, start=1):
            cost, epochs = epoch_cost(job.exp), job.exp.train.epochs
            done_before = 0 if force else len(RunRecord(job.plan.out).metrics())
            bar.update(cost * done_before)
            bar.set_description_str(f"[{number}/{len(pending)}] {job.run_id}")
            bar.set_postfix_str(f"epoch {done_before}/{epochs}")

            def on_epoch(row: dict, cost=cost, epochs=epochs) -> None:
                bar.update(cost)
                bar.set_postfix_str(f"epoch {row['epoch']}/{epochs}")

            started = time.perf_counter()
            summary = train_function(job.exp.task)(job.plan, data_dir=data_dir, figures=figures,
                                                   on_epoch=on_epoch)
            statuses.append(report_trained(job, summary, time.perf_counter() - started, bar))
    return statuses


def report_trained(job: Job, summary: dict, seconds: float, bar: tqdm) -> dict:
    """Say what a run just trained scored; its status row."""
    from rnnlab.study.report import headline

    metric, value = headline(job.exp.task, summary)
    line = f"{job.run_id}: {metric} {value:.2f}% ({seconds:.0f}s)"
    bar.write(line) if not bar.disable else print(line, flush=True)
    return {"run": job.run_id, "status": "trained", "seconds": seconds}


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One reproduction at a time per output folder (the lock dies with its process)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".reproduce.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another rnnlab reproduce is writing {out}; wait for it or use another --out") from None
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` stops like Ctrl-C: atomic writes in progress clean up, finished epochs stay."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_manifest(out: Path, args: argparse.Namespace, experiments: list[Experiment], ablations: bool,
                   quick: bool) -> None:
    """reproduce.json: this command's experiments, keeping other profiles already in the folder."""
    path = out / "reproduce.json"
    current = {(e.profile, e.task) for e in experiments}
    kept: list[dict] = []
    if path.is_file():  # keep the (profile, task) pairs this command does not run
        try:
            previous = json.loads(path.read_text())
            kept = [e for e in previous.get("experiments", []) if (e.get("profile"), e.get("task")) not in current]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            kept = []
    atomic_write_json(path, {
        "format": "rnnlab-reproduce-v1", "profile": args.profile, "quick": quick,
        "seeds": args.seeds, "ablations": ablations, "flaws": FLAWS,
        "experiments": kept + [{**e.describe(out), "quick": quick} for e in experiments]})


def run_reproduce(args: argparse.Namespace) -> int:
    from rnnlab.study.report import build_report

    configure_threads(args.threads)
    if args.seeds < 1:
        raise UserError(f"seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1:
        raise UserError(f"jobs must be >= 1, got {args.jobs}")
    tasks = tuple(args.tasks) if args.tasks else TASKS
    out = Path(args.out)
    quick = bool(args.quick or args.dry_run)
    ablations = args.ablations if args.ablations is not None else (quick or args.profile == "all")
    experiments = all_experiments(args.profile, quick, args.seeds, args.seed, ablations=ablations, tasks=tasks)
    with folder_lock(out), sigterm_as_interrupt():
        jobs = jobs_of(experiments, out, args.force)
        check_existing(jobs, args.force)  # before anything is written
        write_manifest(out, args, experiments, ablations, quick)
        started = time.perf_counter()
        statuses = run_all(jobs, args.force, args.data_dir, not args.no_figures, args.quiet, workers=args.jobs)
        trained = sum(s["status"] == "trained" for s in statuses)
        print(f"{trained} run(s) trained, {len(statuses) - trained} reused, "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        paths = build_report(out, data_dir=args.data_dir)
    print(f"report: {paths[0]} and {paths[1]}")
    return 0


def add_parser(commands) -> None:
    from rnnlab.cli import HelpFormatter

    p = commands.add_parser("reproduce", help="run the whole exercise and write the report",
                            formatter_class=HelpFormatter, description=__doc__)
    g = p.add_argument_group("what to run")
    g.add_argument("--profile", choices=[*PROFILES, "all"], default="reference",
                   help="reference: the exercise's settings with its flaws fixed; "
                   "tuned: rnnlab's best recipes over several seeds")
    g.add_argument("--quick", action="store_true", help="every configuration on a tiny budget (minutes)")
    g.add_argument("--dry-run", action="store_true", help="same as --quick")
    g.add_argument("--tasks", nargs="+", choices=TASKS, default=None, metavar="TASK",
                   help=f"only these tasks ({', '.join(TASKS)}; default: all)")
    g.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the reference's flaws put back (BiRNN/BiLSTM last-step readout, RNN "
                   "without clipping, the flawed addition loss) to measure each fix; default: on with "
                   "--quick and --profile all, off for a full --profile reference (about 4 more minutes)")
    g.add_argument("--seeds", type=int, default=3, help="seeds per tuned configuration")
    g.add_argument("--seed", type=int, default=REFERENCE_SEED, help="first seed (the reference's)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default=None, help="MNIST data root")
    g = p.add_argument_group("output and runtime")
    g.add_argument("--out", default="reports/reference", help="output folder for runs and report")
    g.add_argument("--force", action="store_true", help="rerun finished runs")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (with --jobs 1)")
    g.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own one-thread process; "
                   "2 on a 2-core machine finishes about 20%% sooner")
    g.add_argument("--no-figures", action="store_true", help="skip per-run figures (the report still has its own)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_reproduce)
