"""Copy memory in ``rnnlab reproduce`` and the run figures: LSTM, GRU and a plain RNN on
the same CPU budget at delay T = 100 (no reference numbers: the paper reports curves), and
each run's learning curves and accuracy by recalled position (drawn from the records)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rnnlab.core import plots
from rnnlab.core.document import fixed, pct
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.train import StopRule, TrainConfig
from rnnlab.tasks.base import Experiment, ReportContext
from rnnlab.tasks.copy_memory.data import ALPHABET, CLASSES, CopyConfig
from rnnlab.tasks.delays import (
    RECIPES,
    DelayGrid,
    FullBudget,
    budget_used,
    long_range_experiments,
)

TASK = CopyConfig(delay=100)
# Fresh data, Adam with clipping, the same budget (TRAIN.epochs * TASK.train_size sequences,
# up to 10,000 steps of 64) for every cell, stopped once 99.5% of the validation set's
# recalled symbols are right (a margin over the 99% that counts as solved)
TRAIN = TrainConfig(epochs=100, batch_size=64, lr=0.001, clip=1.0, seed=2111,
                    stop_when="accuracy>=0.995")
MODEL = ModelConfig(cell="lstm", input_size=CLASSES, hidden_size=128, num_outputs=CLASSES)

# The delay grid (profile long-range): every cell at T in 50 ... 1000, up to 1,000 steps of 64
# each, stopped once 99% of the validation set's recalled symbols are right
GRID = DelayGrid(
    "copy-memory", "per_step", MODEL,
    TrainConfig(epochs=10, batch_size=64, lr=0.001, clip=1.0, stop_when="accuracy>=0.99"),
    lambda delay: asdict(CopyConfig(delay=delay, valid_size=500, test_size=2_000)),
    "accuracy", "accuracy on the recalled symbols", lambda accuracy: accuracy >= 0.99,
    "accuracy >= 0.99", lambda test: 1 / ALPHABET,
    # at the baseline's loss (blanks, then a uniform guess) a cell's argmax lands on the blank
    # or on one symbol: 0 to 12.5% right, so the loss says more about how near it is
    ("loss", "cross-entropy (mean over all T + 20 steps)", "baseline_loss"))


# The full-budget runs (profile long-range-recipes) at T = 100
FULL = FullBudget(
    "copy-memory", "per_step", MODEL, TRAIN, asdict(TASK),
    f"delay T = {TASK.delay}, fresh data: {TASK.train_size} sequences per epoch, batch "
    f"{TRAIN.batch_size}, Adam lr {TRAIN.lr}, clip {TRAIN.clip}, up to {TRAIN.epochs} epochs, "
    f"stopped after the first epoch with {StopRule.parse(TRAIN.stop_when).text()} (on the "
    f"recalled symbols); {TASK.test_size} test sequences")


def experiments(profile: str, seeds: tuple[int, ...],
                ablations: bool = False) -> list[Experiment]:
    """The delay grid (``long-range``) and the full-budget runs (``long-range-recipes``)."""
    return long_range_experiments(profile, seeds, GRID, FULL)


def report_section(report: ReportContext) -> None:
    """The delay grid's section; then, for the full-budget runs, each finished run's test loss
    beside the memoryless one."""
    GRID.report_section(report, "Copy memory")
    if not report.experiments("copy-memory", RECIPES):
        return
    report.doc.heading(2, f"Copy memory at delay {TASK.delay}, full budget")
    rows = [(e.label, fixed(test["loss"], 4), fixed(test["baseline_loss"], 4),
             pct(100 * test["accuracy"]), pct(100 * test["sequence_accuracy"]),
             e.task_config.get("delay"), *budget_used(e.first()))
            for e in report.experiments("copy-memory", RECIPES) if e.first()
            for test in [e.first().summary["test"]]]
    if rows:
        report.doc.paragraph("Test cross-entropy of each finished run (first seed) beside the "
                             "memoryless baseline 10 log 8 / (T + 20), how many recalled "
                             "symbols and whole copies were right, and the steps and minutes "
                             "each trained.")
        report.doc.table(("experiment", "test loss", "memoryless loss",
                          "recalled symbols (%)", "whole copies (%)", "T", "steps",
                          "training (min)"), rows, right=(1, 2, 3, 4, 5, 6, 7))


# -- figures (from the records only) --------------------------------------------------
def label_of(record: RunRecord) -> str:
    model = record.config()["model"]
    return f"{model['cell'].upper()} hidden {model['hidden_size']}"


def draw_by_position(record: RunRecord, path: Path) -> Path | None:
    """Test accuracy of each of the 10 recalled symbols, with the guessing rate 1/8."""
    if not record.is_complete or "by_position" not in record.summary()["test"]:
        return None
    rates = record.summary()["test"]["by_position"]
    delay = record.config()["task_config"]["delay"]
    fig, ax = plots.subplots(figsize=(6, 4))
    positions = list(range(1, len(rates) + 1))
    ax.bar(positions, [100 * r for r in rates], color="tab:blue")
    ax.axhline(100 / ALPHABET, color="red", lw=1, ls=":", label=f"guessing: 1/{ALPHABET}")
    ax.set_xticks(positions)
    ax.set_ylim(0, 102)
    ax.set_xlabel("recalled symbol (position in the copy)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{label_of(record)}, delay T = {delay}: accuracy by recalled position")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return plots.save(fig, path)


def draw_run_figures(record: RunRecord) -> list[Path]:
    """One run's figures: learning curves, accuracy by recalled position."""
    out = record.figures_dir
    paths = plots.draw_learning_curves([(label_of(record), record)], out)
    paths.append(draw_by_position(record, out / "accuracy_by_position.png"))
    return [p for p in paths if p is not None]
