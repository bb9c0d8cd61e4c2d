"""Binary addition in ``rnnlab reproduce`` and the report: the exercise's seven
experiments and the numbers it reported, its flaws with the ablation that puts one
back, rnnlab's tuned recipe, the task's figures (drawn from records only), and its
section of the report (its sentences in ``report.md.j2`` beside this file)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rnnlab.core import plots
from rnnlab.core.document import (
    NOT_REPORTED,
    Prose,
    difference,
    mean_std,
    pct,
    target_cell,
)
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.train import TrainConfig
from rnnlab.tasks.addition.data import AdditionConfig, parse_lengths, read_test_by_epoch
from rnnlab.tasks.base import Experiment, Flaw, ReportContext

# The exercise's average bit accuracy over lengths 1..20, by experiment.
REFERENCE = {
    "h3-mse": 92.09,
    "h10-mse": 92.09,
    "h5-mse": 92.09,
    "h5-bce": 100.0,  # the reference's "cross-entropy" was a multi-class CE over time on sigmoids
    "h5-mse-len3": 92.08,  # the reference's fixed-length runs really trained on lengths 1..20
    "h5-mse-len5": 100.0,
    "h5-mse-len10": 100.0,
}
REFERENCE_LENGTHS = 20  # the exercise averaged bit accuracy over L = 1..20
TUNED_TARGET = 100.0  # whole-number accuracy the tuned recipe must reach, percent
# (name, hidden, loss, training lengths): the exercise's experiments, names as in REFERENCE
EXPERIMENTS = [
    ("h3-mse", 3, "mse", "1-20"), ("h10-mse", 10, "mse", "1-20"), ("h5-mse", 5, "mse", "1-20"),
    ("h5-bce", 5, "bce", "1-20"), ("h5-mse-len3", 5, "mse", "3"), ("h5-mse-len5", 5, "mse", "5"),
    ("h5-mse-len10", 5, "mse", "10"),
]
MODEL = ModelConfig(cell="lstm", input_size=2, hidden_size=5, num_outputs=1)
REFERENCE_TRAIN = TrainConfig(epochs=5, batch_size=1, lr=0.01, seed=2111)
# rnnlab's recipe: BCE, fresh batched data, trained on lengths up to 10 only.
# Input noise makes the carry a stable attractor of the state, which is what carries
# the model from 10 steps to 1,000 (without it, 1-3 of 3 seeds failed at L = 1000).
TUNED_MODEL = replace(MODEL, hidden_size=16)
TUNED_TRAIN = TrainConfig(epochs=20, batch_size=64, lr=0.01, schedule="cosine", seed=2111)
TUNED_TASK = AdditionConfig(loss="bce", data="fresh", train_lengths="1-10", train_size=6400,
                            train_noise=0.2, eval_lengths="1-20,100,1000", eval_pairs=1000)
PROSE = Prose(Path(__file__).with_name("report.md.j2"))  # the report section's sentences


def reference_rows(summary: dict) -> list[dict]:
    """A run's per-length test rows at the lengths the exercise averaged (1..20)."""
    return [r for r in summary["test"].get("by_length", []) if r["length"] <= REFERENCE_LENGTHS]


def headline(summary: dict) -> tuple[str, float]:
    """Mean bit accuracy over L = 1..20, the exercise's number (percent)."""
    rows = reference_rows(summary)
    if rows:
        return ("mean bit accuracy over L = 1..20",
                100 * statistics.fmean(r["bit_accuracy"] for r in rows))
    return "mean bit accuracy", 100 * summary["test"]["bit_accuracy_mean"]


def label(hidden: int, loss: str, lengths: str) -> str:
    loss_name = {"mse": "MSE", "bce": "BCE"}.get(loss, loss)
    trained = "" if lengths == "1-20" else f", trained on L = {lengths}"
    return f"hidden {hidden}, {loss_name}{trained}"


def tuned_experiment(seeds: tuple[int, ...]) -> Experiment:
    cfg, train, model = TUNED_TASK, TUNED_TRAIN, TUNED_MODEL
    note = (f"the addition module's tuned recipe: hidden {model.hidden_size}, {cfg.loss.upper()}, "
            f"{cfg.data} data ({cfg.train_size} pairs per epoch), batch {train.batch_size}, "
            f"trained on L = {cfg.train_lengths}, scored at {cfg.eval_lengths}; compared with "
            "the reference's best run (hidden 5, \"cross-entropy\")")
    return Experiment("addition", "tuned", label(model.hidden_size, cfg.loss, cfg.train_lengths),
                      "tuned", "per_step", model, train, cfg.to_dict(), REFERENCE["h5-bce"], note,
                      seeds, target=TUNED_TARGET)


def reference_experiment(name: str, hidden: int, loss: str, lengths: str, seed: int) -> Experiment:
    task = AdditionConfig(loss=loss, train_lengths=lengths)
    note = "binary cross-entropy on the logits" if loss == "bce" else "the reference's loss"
    if lengths != "1-20":
        note += f"; really trained on L = {lengths} only"
    return Experiment("addition", name, label(hidden, loss, lengths), "reference", "per_step",
                      replace(MODEL, hidden_size=hidden), replace(REFERENCE_TRAIN, seed=seed),
                      task.to_dict(), REFERENCE[name], note, (seed,))


def experiments(profile: str, seeds: tuple[int, ...], ablations: bool) -> list[Experiment]:
    if profile not in ("reference", "tuned"):
        return []  # the exercise's task has no other profile
    if profile == "tuned":
        return [tuned_experiment(seeds)]
    found = [reference_experiment(*spec, seed=seeds[0]) for spec in EXPERIMENTS]
    if ablations:
        base = next(e for e in found if e.name == "h5-bce")
        found.append(replace(
            base, name="h5-multiclass-ce", label="hidden 5, multiclass-ce (the reference's loss)",
            task_config={**base.task_config, "loss": "multiclass-ce"}, role="ablation",
            baseline="h5-bce", flaw="multiclass-ce",
            note="the reference's \"cross-entropy\": multi-class over time (flawed)"))
    return found


# -- the report's section ----------------------------------------------------------------
def mean_percent(rows: list[dict], key: str) -> float | None:
    """The mean of ``key`` over ``rows``, in percent (None without rows)."""
    return 100 * statistics.fmean(r[key] for r in rows) if rows else None


def trained_and_other_lengths(run) -> tuple[float | None, float | None]:
    """A run's mean bit accuracy (%) at its training lengths and at the other lengths 1..20."""
    trained = set(parse_lengths(str(run.config["task_config"]["train_lengths"])))
    rows = reference_rows(run.summary)
    return (mean_percent([r for r in rows if r["length"] in trained], "bit_accuracy"),
            mean_percent([r for r in rows if r["length"] not in trained], "bit_accuracy"))


def by_length_of(run, key: str, longest: int | None = None) -> tuple[list[int], list[float]]:
    """(lengths, ``key`` in percent) of a finished run's per-length test rows."""
    rows = [r for r in run.summary["test"].get("by_length", [])
            if longest is None or r["length"] <= longest]
    return [r["length"] for r in rows], [100 * r[key] for r in rows]


def report_section(report: ReportContext) -> None:
    """Task 3: the reference-settings table, why a fixed-length run scores below the
    reference, the tuned recipe's table, and accuracy against input length."""
    if not report.experiments("addition"):
        return
    report.doc.heading(2, PROSE.say("heading"))
    pairs = sorted({e.task_config.get("eval_pairs")
                    for e in report.experiments("addition", "reference")} - {None})
    report.doc.paragraph(PROSE.say("intro", lengths=REFERENCE_LENGTHS, pairs=pairs))
    reference_table(report)
    report.below_reference(report.experiments("addition", "reference"),
                           reason=lambda exp: gap_reason(report, exp))
    for exp in report.experiments("addition", "tuned"):
        tuned_table(report, exp)
    length_figures(report)


def reference_table(report: ReportContext) -> None:
    """One row per reference-settings experiment (one seed each)."""
    rows = []
    for e in report.experiments("addition", "reference"):
        run, mine = e.first(), report.value(e)
        whole = mean_percent(reference_rows(run.summary), "number_accuracy") if run else None
        rows.append([e.label, pct(e.reference, NOT_REPORTED), pct(mine),
                     difference(mine, e.reference, True), pct(whole)])
    if rows:
        report.doc.paragraph(PROSE.say("reference_table"))
        report.doc.table(["experiment", "reference", "rnnlab, reference settings", "difference",
                          f"rnnlab whole-number accuracy, L = 1..{REFERENCE_LENGTHS}"], rows,
                         right=range(1, 5))


def gap_reason(report: ReportContext, exp) -> str:
    """Why a run with the reference's settings scores below the reference."""
    run = exp.first()
    lengths = str(run.config["task_config"].get("train_lengths", ""))
    if not lengths.isdigit():
        return PROSE.say("mixed_gap")
    at, others = trained_and_other_lengths(run)
    mixed = report.value(report.find("reference", "addition", "h5-mse"))
    return PROSE.say("fixed_length_gap", lengths=lengths, at=at, others=others, mixed=mixed)


def tuned_table(report: ReportContext, exp) -> None:
    """The tuned recipe over its seeds: L = 1..20 and each longer length scored."""
    done, seeds = exp.done, len(exp.runs)
    lengths = sorted({r["length"] for run in done
                      for r in run.summary["test"].get("by_length", [])})
    long = [n for n in lengths if n > REFERENCE_LENGTHS]
    whole_short = [mean_percent(reference_rows(run.summary), "number_accuracy") for run in done]
    per_long = [[100 * r["number_accuracy"] for run in done
                 for r in run.summary["test"]["by_length"] if r["length"] == n] for n in long]
    whole_mean = statistics.fmean(whole_short) if whole_short else None
    report.doc.paragraph(PROSE.say("tuned", label=exp.label, lengths=REFERENCE_LENGTHS,
                                   target=target_cell(exp.target, whole_mean),
                                   reference=exp.reference))
    header = ["", f"mean bit accuracy, L = 1..{REFERENCE_LENGTHS}",
              f"mean whole-number accuracy, L = 1..{REFERENCE_LENGTHS}",
              *[f"whole-number accuracy, L = {n}" for n in long]]
    row = [PROSE.say("tuned_row", done=len(done), seeds=seeds), mean_std(exp.values(), seeds),
           mean_std(whole_short, seeds), *[mean_std(values, seeds) for values in per_long]]
    report.doc.table(header, [row], right=range(1, len(header)))


COMPARISONS = [("Hidden 3 vs 10, MSE", ["h3-mse", "h10-mse"]),
               ("Hidden 5, MSE vs BCE", ["h5-mse", "h5-bce"]),
               ("Hidden 5, MSE, trained on one length", ["h5-mse-len3", "h5-mse-len5",
                                                         "h5-mse-len10"])]


def length_figures(report: ReportContext) -> None:
    """Bit and whole-number accuracy against length in the exercise's three comparisons,
    and the tuned recipe's generalisation to the longest lengths scored."""
    runs = {e.name: e for e in report.finished("addition")}

    def panels(key: str) -> list[tuple[str, list[plots.Series]]]:
        return [(title, [(label_from_config(runs[n].first().config),
                          *by_length_of(runs[n].first(), key, REFERENCE_LENGTHS))
                         for n in group if n in runs]) for title, group in COMPARISONS]

    if runs:
        report.figure("addition_bit_accuracy_by_length.png", lambda path: plots.draw_line_panels(
            panels("bit_accuracy"), path, xlabel="input length L (bits)",
            ylabel="bit accuracy (%)", ylim=(-2, 102),
            title="Task 3: bit accuracy against input length (reference settings); "
                  "legends from each run's config.json"), PROSE.say("bit_accuracy"))
        report.figure("addition_number_accuracy_by_length.png",
                      lambda path: plots.draw_line_panels(
                          panels("number_accuracy"), path, xlabel="input length L (bits)",
                          ylabel="whole-number accuracy (%)", ylim=(-2, 102),
                          title="Task 3: whole-number accuracy against input length "
                                "(reference settings)"), PROSE.say("number_accuracy"))
    tuned = report.finished("addition", "tuned")
    if tuned:
        generalisation_figure(report, tuned + [runs[n] for n in ("h5-bce", "h5-mse-len10")
                                               if n in runs])


def generalisation_figure(report: ReportContext, shown: list) -> None:
    """Whole-number accuracy up to the longest length scored (log scale)."""
    lines = [(f"{label_from_config(e.first().config)} ({e.profile})",
              *by_length_of(e.first(), "number_accuracy")) for e in shown]
    trained = shown[0].first().config["task_config"]["train_lengths"]
    report.figure("addition_generalisation.png", lambda path: plots.draw_lines(
        lines, path, xlabel="input length L (bits, log scale)",
        ylabel="whole-number accuracy (%)", log_x=True, ylim=(-2, 102),
        title=f"Task 3: generalisation to long inputs (tuned: trained on L = {trained})"),
        PROSE.say("generalisation"))


# -- what the records show about each flaw -----------------------------------------------
def explain_multiclass(report: ReportContext) -> list[str]:
    """The flawed loss against binary cross-entropy, and why they can score alike."""
    items = []
    for ablation, base in report.ablation_pairs("multiclass-ce"):
        flawed, fixed = report.value(ablation), report.value(base)
        items.append(PROSE.say("multiclass", label=ablation.label, flawed=flawed,
                               fixed_value=fixed))
        if flawed is not None and fixed is not None and abs(flawed - fixed) < 0.5:
            items.append(PROSE.say("multiclass_alike"))
    if not items:
        items.append(report.not_measured)
    mse = report.find("reference", "addition", "h5-mse")
    bce = report.find("reference", "addition", "h5-bce")
    if bce is not None:
        items.append(PROSE.say("bce_and_mse", bce=report.value(bce), reference=bce.reference,
                               mse=report.value(mse)))
    return items


def explain_fixed_length(report: ReportContext) -> list[str]:
    """Each fixed-length run at its own length and at the lengths it never saw."""
    items = []
    mixed = report.find("reference", "addition", "h5-mse")
    if mixed is not None:
        items.append(PROSE.say("mixed_run", value=report.value(mixed)))
    for name in ("h5-mse-len3", "h5-mse-len5", "h5-mse-len10"):
        e = report.find("reference", "addition", name)
        if e is None:
            continue
        if e.first() is None:
            items.append(PROSE.say("not_finished", label=e.label))
            continue
        at, others = trained_and_other_lengths(e.first())
        items.append(PROSE.say("fixed_length", label=e.label, at=at, others=others,
                               reference=e.reference))
    return items


def explain_legends(report: ReportContext) -> list[str]:
    """The legend each run's config.json gives it."""
    entries = [(e.name, label_from_config(e.first().config))
               for e in report.experiments("addition", role=None) if e.first()]
    return [PROSE.say("legends", entries=entries)] if entries else []


def explain_collapse(report: ReportContext) -> list[str]:
    """Bit accuracy per length and whole-number accuracy: a collapse cannot hide in them."""
    items = []
    for e in report.experiments("addition", "reference"):
        rows = reference_rows(e.first().summary) if e.first() else []
        if not rows:
            continue
        bits = [100 * r["bit_accuracy"] for r in rows]
        items.append(PROSE.say("collapse", label=e.label, mean=statistics.fmean(bits),
                               lowest=min(bits), highest=max(bits),
                               whole=mean_percent(rows, "number_accuracy")))
    return items


FLAWS = (
    Flaw("multiclass-ce", "addition",
         "The \"cross-entropy\" run applied a multi-class cross-entropy across the time axis "
         "to sigmoid outputs.",
         "rnnlab uses binary cross-entropy on the logits (one bit per step).", explain_multiclass,
         ablation="h5-multiclass-ce"),
    Flaw("fixed-length-not-used", "addition",
         "The \"trained only on L = 3 / 5 / 10\" runs were in fact trained on the mixed 1..20 "
         "set (the fixed-length sets were never passed in).",
         "rnnlab really trains on the one length and scores every length 1..20.",
         explain_fixed_length),
    Flaw("swapped-legends", "addition", "The legends of two comparison plots were swapped.",
         "rnnlab writes every legend from the run's config.json (hidden size, loss, lengths).",
         explain_legends),
    Flaw("mse-collapse", "addition",
         "Identical 92.09% for several different models suggests the MSE runs collapsed to a "
         "trivial solution.",
         "rnnlab reports bit and whole-number accuracy per length, so a collapse is visible.",
         explain_collapse),
)


# -- figures ------------------------------------------------------------------------------
def by_length(record: RunRecord) -> list[dict]:
    return record.summary()["test"]["by_length"] if record.is_complete else []


def run_label(record: RunRecord) -> str:
    """A legend entry from the run's own config: cell, hidden size, loss, training lengths."""
    return label_from_config(record.config())


def label_from_config(config: dict) -> str:
    """``run_label`` of a config.json already read."""
    model, task = config["model"], config["task_config"]
    loss = {"mse": "MSE", "bce": "BCE"}.get(task["loss"], task["loss"])
    return (f"{model['cell'].upper()} hidden {model['hidden_size']}, {loss}, "
            f"trained on L = {task['train_lengths']}")


def accuracy_by_length_figure(runs: Sequence[tuple[str, RunRecord]], title: str = ""):
    """Bit accuracy (left) and whole-number accuracy (right) against length, one line
    per (label, run): each label travels with its own record, so legends cannot swap."""
    fig, axes = plots.subplots(1, 2, figsize=(10, 4))
    longest = 1
    for label, record in runs:
        rows = by_length(record)
        lengths = [r["length"] for r in rows]
        longest = max([longest, *lengths])
        for ax, key in zip(axes, ("bit_accuracy", "number_accuracy"), strict=True):
            ax.plot(lengths, [100 * r[key] for r in rows], marker="o", ms=3, label=label)
    for ax, name in zip(axes, ("bit accuracy (%)", "whole-number accuracy (%)"), strict=True):
        ax.set_xlabel("input length L (bits)")
        ax.set_ylabel(name)
        ax.set_ylim(-2, 102)
        if longest > 100:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Accuracy against input length", fontsize=10)
    return fig


def draw_accuracy_by_length(runs: Sequence[tuple[str, RunRecord]], path: Path,
                            title: str = "") -> Path:
    """:func:`accuracy_by_length_figure` saved as ``path`` (e.g. to compare the exercise's
    models)."""
    return plots.save(accuracy_by_length_figure(runs, title), path)


def draw_run_figures(record: RunRecord) -> list[Path]:
    """Loss by epoch (train, validation, test), test accuracy by epoch, accuracy by length."""
    rows, tests = record.metrics(), read_test_by_epoch(record)
    out = record.figures_dir
    fig, (loss_ax, acc_ax) = plots.subplots(1, 2, figsize=(10, 4))
    noise = record.config()["task_config"].get("train_noise", 0.0)
    loss_ax.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker="o", ms=3,
                 label=f"train (inputs with noise {noise:g})" if noise else "train")
    loss_ax.plot([r["epoch"] for r in rows], [r["valid_loss"] for r in rows], marker="o", ms=3,
                 label="validation (training lengths)")
    loss_ax.plot([r["epoch"] for r in tests], [r["test_loss"] for r in tests], marker="o", ms=3,
                 label="test (L in 1..20)")
    acc_ax.plot([r["epoch"] for r in tests], [100 * r["test_accuracy"] for r in tests],
                marker="o", ms=3,
                label="test bit accuracy")
    acc_ax.plot([r["epoch"] for r in tests], [100 * r["test_number_accuracy"] for r in tests],
                marker="o",
                ms=3, label="test whole-number accuracy")
    loss = record.config()["task_config"]["loss"]
    loss_name = {"mse": "MSE of the sigmoid", "bce": "binary cross-entropy"}.get(loss, loss)
    for ax, name in ((loss_ax, f"loss ({loss_name})"), (acc_ax, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training loss, test loss and test accuracy by epoch", fontsize=10)
    paths = [plots.save(fig, out / "learning_curves.png")]
    if record.is_complete:
        paths.append(draw_accuracy_by_length([(run_label(record), record)],
                                             out / "accuracy_by_length.png"))
    return paths
