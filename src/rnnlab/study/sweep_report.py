"""The report of a sweep folder (``rnnlab report OUT``, and the end of ``rnnlab sweep``).

Reads ``OUT/sweep.json`` (task, study, storage, metric and the searched specs) and every
trial's ``trial.json`` and run record under ``OUT/trials/``, then writes into one
:class:`~rnnlab.core.document.Document`: the study and its storage (password masked), the
trials by state and a table of them, the best trial's settings and learning curves,
Optuna's parameter importances (the one thing read from the study in its storage), and one
figure of the metric against each searched parameter. Out come ``report.md`` with
``figures/*.png`` beside it and a self-contained ``report.html``. No task is named here;
the sentences are in ``templates/sweep.md.j2``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.core import plots
from rnnlab.core.document import Document, Prose, pct, render_html, render_markdown
from rnnlab.core.errors import RunFolderError, UserError
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.records import RunRecord
from rnnlab.study.sweep import (
    SWEEP_FILE,
    TRIAL_FILE,
    load_optuna,
    open_storage,
    read_json,
    storage_spec,
)

PROSE = Prose(Path(__file__).with_name("templates") / "sweep.md.j2")
STATES = ("complete", "pruned", "failed", "running")  # the order trials are counted in


@dataclass(frozen=True)
class TrialRecord:
    """One trial as its ``trial.json`` left it."""

    number: int
    state: str  # running, complete, pruned, failed
    params: dict[str, Any]
    value: float | None  # the best epoch's metric (complete and pruned trials)
    test_accuracy: float | None  # complete trials
    folder: Path


@dataclass(frozen=True)
class SweepRecords:
    """A sweep folder's records: ``sweep.json`` and its trials, by trial number."""

    out: Path
    task: str
    study: str
    storage: str  # as recorded: a URL's password masked
    default_storage: bool  # the journal file in ``out``
    metric: str
    direction: str  # maximize or minimize
    space: dict[str, str]  # searched parameter -> spec (log:..., int:..., choice:...)
    fixed: dict[str, Any]  # settings every trial shares
    trials: list[TrialRecord]

    def with_value(self, *states: str) -> list[TrialRecord]:
        return [t for t in self.trials if t.state in states and t.value is not None]

    @property
    def best(self) -> TrialRecord | None:
        complete = self.with_value("complete")
        if not complete:
            return None
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(complete, key=lambda t: (sign * (t.value or 0.0), -t.number))

    def kind(self, name: str) -> str:
        """The parameter's spec kind; for a folder recorded without its space, ``choice``
        where a value is not a number, else ``float``."""
        if name in self.space:
            return self.space[name].partition(":")[0]
        values = [t.params[name] for t in self.trials if name in t.params]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        return "float" if numbers else "choice"


def is_sweep_folder(out: str | Path) -> bool:
    return (Path(out) / SWEEP_FILE).is_file()


def read_trial(path: Path) -> TrialRecord:
    record = read_json(path) or {}
    try:
        return TrialRecord(int(record["trial"]), str(record.get("state", "running")),
                           dict(record.get("params", {})), record.get("value"),
                           record.get("test_accuracy"), path.parent)
    except (KeyError, TypeError, ValueError) as err:
        raise RunFolderError(f"{path} is not an rnnlab trial record ({err})") from None


def load_sweep(out: str | Path) -> SweepRecords:
    """The sweep folder's records; a folder without ``sweep.json`` is a RunFolderError."""
    folder = Path(out)
    record = read_json(folder / SWEEP_FILE)
    if not isinstance(record, dict) or not {"task", "study", "storage"} <= record.keys():
        raise RunFolderError(f"{folder} is not a sweep folder (no usable {SWEEP_FILE})")
    trials = [read_trial(p) for p in sorted(folder.glob(f"trials/*/{TRIAL_FILE}"))]
    trials = sorted((t for t in trials if t.folder.is_dir()), key=lambda t: t.number)
    first = read_json(trials[0].folder / TRIAL_FILE) if trials else {}
    metric = record.get("metric") or (first or {}).get("metric") or "valid_accuracy"
    direction = record.get("direction") or (
        "maximize" if metric.endswith("accuracy") else "minimize")
    return SweepRecords(folder, record["task"], record["study"], record["storage"],
                        bool(record.get("default_storage")), metric, direction,
                        dict(record.get("space") or {}), dict((first or {}).get("fixed") or {}),
                        trials)


# -- Optuna's importances: the one thing read from the storage ------------------------------
def param_importances(records: SweepRecords) -> tuple[dict[str, float] | None, str]:
    """(importance by parameter, most important first) and the sentence that introduces
    them; (None, the sentence saying why not) when they cannot be computed."""
    complete = records.with_value("complete")
    if len(complete) < 2:
        return None, PROSE.say("importance_too_few", complete=len(complete))
    names = list(records.space) or sorted({k for t in complete for k in t.params})
    if all(len({json.dumps(t.params.get(n)) for t in complete}) < 2 for n in names):
        return None, PROSE.say("importance_not_varied")
    try:
        optuna = load_optuna()
        spec = storage_spec(None if records.default_storage else records.storage, records.out)
        study = optuna.load_study(study_name=records.study, storage=open_storage(spec))
        # PED-ANOVA: needs no scikit-learn (fANOVA, Optuna's default, does) and draws
        # nothing at random, so the same study gives the same numbers
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        done = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    except Exception as err:  # Optuna, its storage and its estimators raise many kinds
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return None, PROSE.say("importance_failed", error=f"{type(err).__name__}: {reason}")
    return dict(found), PROSE.say("importance_intro", complete=done)


# -- figures --------------------------------------------------------------------------------
def param_figure(records: SweepRecords, name: str, path: Path) -> Path | None:
    """The metric against one parameter: complete trials as dots, pruned ones as crosses,
    the best as a star; a log axis for a log-scale parameter, one column per choice."""
    shown = [t for t in records.with_value("complete", "pruned") if name in t.params]
    if not shown:
        return None
    kind, best = records.kind(name), records.best
    choices = param_choices(records, name) if kind == "choice" else []

    def x_of(trial: TrialRecord) -> float:
        value = trial.params[name]
        return float(choices.index(json.dumps(value))) if choices else float(value)

    fig, ax = plots.subplots(figsize=(5.2, 3.6))
    for state, style in (("complete", {"marker": "o", "color": "tab:blue"}),
                         ("pruned", {"marker": "x", "color": "tab:gray"})):
        group = [t for t in shown if t.state == state]
        if group:
            ax.scatter([x_of(t) for t in group], [t.value for t in group], label=state,
                       s=30, **style)
    if best is not None and name in best.params:
        ax.scatter([x_of(best)], [best.value], marker="*", s=180, color="tab:orange",
                   edgecolors="black", linewidths=0.6, label=f"best (trial {best.number})",
                   zorder=3)
    style_param_axes(ax, name, kind, choices, records.metric)
    return plots.save(fig, path)


def param_choices(records: SweepRecords, name: str) -> list[str]:
    """A choice parameter's values (JSON text) in the spec's order, then any other seen."""
    spec = records.space.get(name, "")
    listed = [part.strip() for part in spec.partition(":")[2].split(",") if part.strip()]
    seen = [json.dumps(t.params[name]) for t in records.trials if name in t.params]
    typed = {str(json.loads(text)): text for text in seen}  # "32" -> "32", "lstm" -> '"lstm"'
    ordered = [typed.get(text, json.dumps(text)) for text in listed]
    return list(dict.fromkeys([*ordered, *seen]))


def style_param_axes(ax, name: str, kind: str, choices: list[str], metric: str) -> None:
    if choices:
        ax.set_xticks(range(len(choices)), [str(json.loads(c)) for c in choices])
        ax.set_xlim(-0.5, len(choices) - 0.5)
    elif kind == "log":
        ax.set_xscale("log")
    elif kind == "int":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(name + (" (log scale)" if kind == "log" else ""))
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"{metric} against {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


# -- the document ---------------------------------------------------------------------------
def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class SweepReport:
    """The report being written: the sweep's records and the document."""

    def __init__(self, records: SweepRecords):
        self.records = records
        self.figures = records.out / "figures"
        self.doc = Document()

    def figure(self, name: str, draw: Callable[[Path], Path | None], caption: str) -> None:
        """Draw ``figures/name`` and add it; a record it cannot read leaves a sentence."""
        try:
            path = draw(self.figures / name)
        except (KeyError, ValueError, TypeError, IndexError, UserError) as err:
            self.doc.paragraph(PROSE.say("figure_failed", caption=caption,
                                         error=f"{type(err).__name__}: {err}"))
            return
        if path is not None:
            self.doc.figure(path, caption)

    def header(self) -> None:
        r = self.records
        states = [f"{sum(t.state == s for t in r.trials)} {s}" for s in STATES
                  if any(t.state == s for t in r.trials)]
        self.doc.heading(1, PROSE.say("title", study=r.study, task=r.task))
        self.doc.paragraph(PROSE.say("intro", study=r.study, storage=r.storage, task=r.task,
                                     metric=r.metric, direction=r.direction,
                                     trials=len(r.trials), states=states))
        if not r.default_storage:
            self.doc.paragraph(PROSE.say("others_elsewhere"))

    def trial_table(self) -> None:
        r = self.records
        self.doc.heading(2, PROSE.say("trials_heading"))
        if not r.trials:
            self.doc.paragraph(PROSE.say("no_trials"))
            return
        names = list(r.space) or sorted({k for t in r.trials for k in t.params})
        rows = [[str(t.number), t.state, *(format_value(t.params.get(n, "—")) for n in names),
                 "—" if t.value is None else f"{t.value:.4f}",
                 "—" if t.test_accuracy is None else pct(100 * t.test_accuracy),
                 t.folder.relative_to(r.out).as_posix()] for t in r.trials]
        header = ["trial", "state", *names, r.metric, "test accuracy (%)", "run folder"]
        self.doc.table(header, rows, right=[0, *range(2, len(names) + 4)])

    def best_trial(self) -> None:
        r, best = self.records, self.records.best
        self.doc.heading(2, PROSE.say("best_heading"))
        if best is None:
            self.doc.paragraph(PROSE.say("no_best"))
            return
        self.doc.paragraph(PROSE.say(
            "best", number=best.number, metric=r.metric, value=best.value,
            test=None if best.test_accuracy is None else 100 * best.test_accuracy,
            folder=best.folder.relative_to(r.out).as_posix()))
        self.doc.table(["setting", "value"],
                       [[k, format_value(v)] for k, v in best.params.items()])
        if r.fixed:
            self.doc.paragraph(PROSE.say("fixed_settings", settings=[
                f"{k}={format_value(v)}" for k, v in r.fixed.items()]))
        self.best_curves(best)

    def best_curves(self, best: TrialRecord) -> None:
        runs = [(f"trial {best.number}", RunRecord(best.folder))]

        def curve(keys: list[tuple[str, str]], ylabel: str, title: str, percent: bool):
            def draw(path: Path) -> Path:
                fig = plots.curves_figure(runs, keys, ylabel, title, percent=percent)
                fig.axes[0].xaxis.get_major_locator().set_params(integer=True)  # epochs
                return plots.save(fig, path)

            return draw

        self.figure("best_loss_curves.png", curve(
            [("train_loss", "train"), ("valid_loss", "valid")], "loss", "Loss by epoch", False),
            PROSE.say("curves", number=best.number))
        self.figure("best_valid_accuracy.png", curve(
            [("valid_accuracy", "")], "validation accuracy (%)", "Validation accuracy by epoch",
            True), PROSE.say("accuracy_curve", number=best.number))

    def importances(self) -> None:
        self.doc.heading(2, PROSE.say("importance_heading"))
        found, sentence = param_importances(self.records)
        self.doc.paragraph(sentence)
        if found is not None:
            ranked = sorted(found.items(), key=lambda item: -item[1])
            self.doc.table(["parameter", "importance"],
                           [[name, f"{share:.3f}"] for name, share in ranked], right=[1])

    def by_parameter(self) -> None:
        r = self.records
        self.doc.heading(2, PROSE.say("by_param_heading"))
        if not r.with_value("complete", "pruned"):
            self.doc.paragraph(PROSE.say("no_values"))
            return
        self.doc.paragraph(PROSE.say("by_param_intro"))
        names = list(r.space) or sorted({k for t in r.trials for k in t.params})
        for name in names:
            self.figure(f"param_{name}.png", lambda path, n=name: param_figure(r, n, path),
                        PROSE.say("param_figure", name=name, metric=r.metric,
                                  log=r.kind(name) == "log"))


def build_sweep_report(out: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html`` into the
    sweep folder ``out``, from its records (and the study's importances)."""
    report = SweepReport(load_sweep(out))
    report.header()
    report.trial_table()
    report.best_trial()
    report.importances()
    report.by_parameter()
    folder = report.records.out
    md_path, html_path = folder / "report.md", folder / "report.html"
    atomic_write_text(md_path, render_markdown(report.doc, folder))
    atomic_write_text(html_path, render_html(report.doc, f"rnnlab sweep report: "
                                             f"{report.records.study}"))
    return md_path, html_path
