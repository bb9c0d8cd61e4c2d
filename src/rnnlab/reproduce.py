"""``rnnlab reproduce``: every configuration of the exercise, then the report.

Layout of the output folder::

    reproduce.json                      the experiments (ids, labels, reference numbers)
    runs/<profile>/<task>/<name>/seed-<s>/   one run record per experiment and seed
    report.md, report.html, figures/    written from the records by ``rnnlab report``

A run whose ``summary.json`` exists is finished and reused; an interrupted run
resumes from its last completed epoch; ``--force`` reruns everything.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from rnnlab import reference
from rnnlab.errors import UserError
from rnnlab.fileio import atomic_write_json
from rnnlab.models import ModelConfig
from rnnlab.records import RunRecord
from rnnlab.runs import RunPlan
from rnnlab.tasks import task_module
from rnnlab.train import TrainConfig, configure_threads

PROFILES = ("reference", "tuned")


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
    seeds: tuple[int, ...] = field(default=(2111,))

    def run_dir(self, out: Path, seed: int) -> Path:
        return out / "runs" / self.profile / self.task / self.name / f"seed-{seed}"

    def plan(self, out: Path, seed: int, force: bool) -> RunPlan:
        return RunPlan(self.run_dir(out, seed), self.task, self.model_kind, self.model,
                       replace(self.train, seed=seed), self.task_config, force=force,
                       resume=not force, quiet=True)

    def describe(self, out: Path) -> dict:
        return {"task": self.task, "name": self.name, "label": self.label, "profile": self.profile,
                "reference": self.reference, "note": self.note, "model": self.model.to_dict(),
                "train": self.train.to_dict(), "task_config": self.task_config,
                "runs": [str(self.run_dir(out, s).relative_to(out)) for s in self.seeds]}


# -- Task 1 ---------------------------------------------------------------------------
MNIST_MODELS = {  # name: (cell, hidden, bidirectional, reference epochs)
    "rnn": ("rnn", 128, False, 5), "lstm": ("lstm", 100, False, 7), "gru": ("gru", 128, False, 7),
    "birnn": ("rnn", 128, True, 5), "bilstm": ("lstm", 100, True, 7), "bigru": ("gru", 128, True, 7),
}
QUICK_MNIST_EXAMPLES = 2000


def mnist_experiments(profile: str, quick: bool, seeds: tuple[int, ...]) -> list[Experiment]:
    experiments = []
    for name, (cell, hidden, bidirectional, epochs) in MNIST_MODELS.items():
        label = ("Bi" if bidirectional else "") + cell.upper()
        task = {"dataset": "mnist", "num_valid": 10_000, "augment_shift": 0,
                "limit": QUICK_MNIST_EXAMPLES if quick else None}
        if profile == "reference":
            clip = 1.0 if cell == "rnn" else None  # the reference's RNN diverged without it
            train = TrainConfig(epochs=1 if quick else epochs, batch_size=500, lr=0.01, clip=clip, seed=seeds[0])
            note = "h_n readout; gradient clipping 1.0" if cell == "rnn" else "h_n readout"
            model = ModelConfig(cell=cell, input_size=28, hidden_size=hidden, bidirectional=bidirectional)
        else:
            model, train, task, note = tuned_mnist(cell, bidirectional, quick, task)
        ref = reference.MNIST[name]["test"] if reference.MNIST[name] else None
        experiments.append(Experiment("mnist", name, label, profile, "classifier", model, train, task,
                                      ref, note, seeds if profile == "tuned" else seeds[:1]))
    return experiments


def tuned_mnist(cell: str, bidirectional: bool, quick: bool, task: dict):
    """rnnlab's tuned recipe: wider, clipped, one-cycle schedule, small random shifts."""
    hidden = 128
    model = ModelConfig(cell=cell, input_size=28, hidden_size=hidden, bidirectional=bidirectional,
                        dropout=0.1 if cell != "rnn" else 0.0)
    train = TrainConfig(epochs=1 if quick else 20, batch_size=128, lr=3e-3 if cell != "rnn" else 1e-3,
                        schedule="onecycle", clip=1.0)
    task = {**task, "augment_shift": 0 if quick else 2}
    note = f"hidden {hidden}, Adam one-cycle, clip 1.0, shifts up to 2 px, batch 128, 20 epochs"
    return model, train, task, note


def all_experiments(profile: str, quick: bool, seeds: int, first_seed: int = 2111) -> list[Experiment]:
    profiles = PROFILES if profile == "all" else (profile,)
    seed_list = tuple(first_seed + i for i in range(seeds))
    experiments = []
    for p in profiles:
        experiments += mnist_experiments(p, quick, seed_list)
    return experiments


# -- running --------------------------------------------------------------------------
def total_epochs(experiments: list[Experiment]) -> int:
    return sum(e.train.epochs * len(e.seeds) for e in experiments)


def run_all(experiments: list[Experiment], out: Path, force: bool, data_dir: str | None,
            figures: bool, quiet: bool) -> list[dict]:
    """Train every (experiment, seed) not yet finished; returns one status row per run."""
    statuses = []
    bar = tqdm(total=total_epochs(experiments), unit="epoch", dynamic_ncols=True,
               disable=quiet or not sys.stderr.isatty())
    with bar:
        for exp in experiments:
            for seed in exp.seeds:
                plan = exp.plan(out, seed, force)
                run_id = str(plan.out.relative_to(out / "runs"))
                if not force and RunRecord(plan.out).is_complete:
                    bar.update(exp.train.epochs)
                    statuses.append({"run": run_id, "status": "reused"})
                    continue
                bar.set_description(run_id)
                done_before = len(RunRecord(plan.out).metrics()) if not force else 0
                bar.update(done_before)
                started = time.perf_counter()
                summary = task_module(exp.task).train_plan(
                    plan, data_dir=data_dir, figures=figures, on_epoch=lambda row: bar.update(1))
                statuses.append({"run": run_id, "status": "trained",
                                 "seconds": time.perf_counter() - started})
                line = f"{run_id}: test accuracy {100 * summary['test']['accuracy']:.2f}%"
                bar.write(line) if not bar.disable else print(line, flush=True)
    return statuses


def run_reproduce(args: argparse.Namespace) -> int:
    from rnnlab.report import build_report

    configure_threads(args.threads)
    if args.seeds < 1:
        raise UserError(f"seeds must be >= 1, got {args.seeds}")
    out = Path(args.out)
    experiments = all_experiments(args.profile, args.quick or args.dry_run, args.seeds, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "reproduce.json", {
        "profile": args.profile, "quick": bool(args.quick or args.dry_run), "seeds": args.seeds,
        "experiments": [e.describe(out) for e in experiments]})
    started = time.perf_counter()
    statuses = run_all(experiments, out, args.force, args.data_dir, not args.no_figures, args.quiet)
    trained = sum(s["status"] == "trained" for s in statuses)
    print(f"{trained} run(s) trained, {len(statuses) - trained} reused, "
          f"{time.perf_counter() - started:.0f}s")
    paths = build_report(out, data_dir=args.data_dir)
    print(f"report: {paths[0]} and {paths[1]}")
    return 0


def add_parser(commands) -> None:
    from rnnlab.cli import HelpFormatter

    p = commands.add_parser("reproduce", help="run the whole exercise and write the report",
                            formatter_class=HelpFormatter, description=__doc__)
    p.add_argument("--profile", choices=[*PROFILES, "all"], default="reference",
                   help="reference: the exercise's settings with its flaws fixed; "
                   "tuned: rnnlab's best recipes over several seeds")
    p.add_argument("--quick", action="store_true", help="every configuration on a tiny budget (minutes)")
    p.add_argument("--dry-run", action="store_true", help="same as --quick")
    p.add_argument("--seeds", type=int, default=3, help="seeds per tuned configuration")
    p.add_argument("--seed", type=int, default=2111, help="first seed (the reference's)")
    p.add_argument("--out", default="reports/reference", help="output folder for runs and report")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--data-dir", default=None, help="MNIST data root")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-figures", action="store_true", help="skip per-run figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_reproduce)

