"""``rnnlab report RUNS_DIR``: the report, written from run records only.

Reads ``reproduce.json`` (the experiments, the reference's numbers, the flaws) and every
run's record once, into one results table (:class:`Results`). Then writes, into one
:class:`~rnnlab.core.document.Document`: the header; each registered task's section, in
registry order (the task's ``report_section``, which asks the :class:`Report` here for
lookups, tables and figures); a generic section for a task in the manifest that is not
registered; the flaws, each explained by its task's :class:`~rnnlab.tasks.base.Flaw`;
the environment; the settings. Out come ``report.md`` with ``figures/*.png`` beside it
and a self-contained ``report.html``. No number is typed in here, and no task is named:
a run that is not finished shows as "missing". The sentences are in
``templates/report.md.j2``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.core import plots
from rnnlab.core.document import (
    MISSING,
    NOT_REPORTED,
    Document,
    Prose,
    binomial_se,
    difference,
    mean_std,
    pct,
    render_html,
    render_markdown,
    seconds,
    signed,
    target_cell,
)
from rnnlab.core.errors import UserError
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.records import RunRecord
from rnnlab.study.experiments import PROFILES
from rnnlab.tasks.base import Flaw, Task
from rnnlab.tasks.registry import REGISTRY

PROSE = Prose(Path(__file__).with_name("templates") / "report.md.j2")
DEFAULT_METRIC = "test accuracy"  # Task.headline's name
SEED_SPREAD_POINTS = 1.0  # a tuned result whose seeds differ by more gets each seed listed
COMPARISON_HEADER = ("reference", "rnnlab, reference settings", "difference",
                     "rnnlab tuned (mean ± std over seeds)", "difference", "tuned target")


def task_class(task: str) -> type[Task] | None:
    """The registered task of this name; None for one registered elsewhere (or no longer)."""
    return REGISTRY.get(task) if task in REGISTRY.names() else None


def headline(task: str, summary: dict) -> tuple[str, float]:
    """The task's headline (name, percent); the base Task's for an unregistered task."""
    return (task_class(task) or Task).headline(summary)


# -- the results table: reproduce.json and every run record, read once --------------------
@dataclass
class RunResult:
    """One row of the results table: one seed of one experiment, as its record left it."""

    seed: int
    path: Path
    config: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    summary: dict | None = None  # None: not finished (or unreadable)
    problem: str = ""  # why a record could not be read
    metric: str = ""  # the task's headline: its name ...
    value: float | None = None  # ... and its value in percent (finished runs)

    @property
    def record(self) -> RunRecord:
        return RunRecord(self.path)

    @property
    def done(self) -> bool:
        return self.summary is not None

    def curve(self, key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
        """(epochs, values) of one metrics.jsonl column, e.g. a line of a by-epoch figure."""
        return [m["epoch"] for m in self.metrics], [scale * m[key] for m in self.metrics]


@dataclass
class ExperimentResult:
    """One experiment of reproduce.json (see ``Experiment.describe``) with its runs."""

    task: str
    name: str
    label: str
    profile: str
    runs: list[RunResult]
    role: str = "main"
    baseline: str | None = None
    flaw: str | None = None
    reference: float | None = None
    reference_curve: list[float] | None = None
    target: float | None = None
    note: str = ""
    quick: bool = False
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    task_config: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.profile}/{self.task}/{self.name}"

    @property
    def done(self) -> list[RunResult]:
        return [r for r in self.runs if r.done]

    def values(self) -> list[float]:
        """The headline number of each finished seed."""
        return [r.value for r in self.done if r.value is not None]

    def first(self) -> RunResult | None:
        """The first finished seed (reference-settings experiments have one seed)."""
        return self.done[0] if self.done else None


@dataclass
class Results:
    manifest: dict  # reproduce.json as read
    experiments: list[ExperimentResult]

    @property
    def runs(self) -> list[RunResult]:
        return [run for e in self.experiments for run in e.runs]


def read_run(out: Path, relative: str, seed: int, task: str) -> RunResult:
    run = RunResult(seed, out / relative)
    record = RunRecord(run.path)
    try:
        if (run.path / "config.json").is_file():
            run.config = record.config()
        run.metrics = record.metrics()
        if record.is_complete:
            run.summary = record.summary()
            run.metric, run.value = headline(task, run.summary)
    except UserError as err:
        run.summary, run.problem = None, str(err)
    except (KeyError, TypeError, ValueError) as err:  # a summary without the headline's fields
        run.summary, run.problem = None, f"summary.json lacks {err}"
    return run


def load_manifest(out: Path) -> dict:
    path = out / "reproduce.json"
    if not path.is_file():
        raise UserError(f"{out} has no reproduce.json; run `rnnlab reproduce --out {out}` first")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); run `rnnlab reproduce` again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("experiments"), list):
        raise UserError(f"{path} is not an rnnlab reproduce.json (no experiment list)")
    return manifest


EXPERIMENT_KEYS = ("role", "baseline", "flaw", "reference", "reference_curve", "target", "note",
                   "quick", "model", "train", "task_config", "seeds")


def read_experiment(out: Path, info: Any) -> ExperimentResult:
    if not isinstance(info, dict) or not {"task", "name", "profile", "runs"} <= info.keys():
        raise UserError(f"{out / 'reproduce.json'} has an experiment without task, name, "
                        "profile or runs")
    seeds = info.get("seeds") or [int(p.rsplit("seed-", 1)[-1]) for p in info["runs"]]
    runs = [read_run(out, relative, seed, info["task"])
            for relative, seed in zip(info["runs"], seeds, strict=True)]
    known = {key: info[key] for key in EXPERIMENT_KEYS if info.get(key) is not None}
    return ExperimentResult(info["task"], info["name"], info.get("label") or info["name"],
                            info["profile"], runs, **{**known, "seeds": list(seeds)})


def load_results(out: Path) -> Results:
    manifest = load_manifest(out)
    return Results(manifest, [read_experiment(out, info) for info in manifest["experiments"]])


# -- the context every section writes through ----------------------------------------------
class Report:
    """The report being written: the results table, the document, and what task sections
    ask of them (``rnnlab.tasks.base.ReportContext``)."""

    def __init__(self, out: Path, results: Results, data_dir: str | None):
        self.out, self.results, self.data_dir = out, results, data_dir
        self.figures = out / "figures"
        self.doc = Document()
        self.not_measured = PROSE.say("not_measured")

    # -- lookups ---------------------------------------------------------------------
    def experiments(self, task: str, profile: str | None = None,
                    role: str | None = "main") -> list[ExperimentResult]:
        """The task's experiments in manifest order; ``None`` matches any profile or role."""
        return [e for e in self.results.experiments if e.task == task
                and (profile is None or e.profile == profile) and (role is None or e.role == role)]

    def find(self, profile: str, task: str, name: str) -> ExperimentResult | None:
        return next((e for e in self.results.experiments
                     if (e.profile, e.task, e.name) == (profile, task, name)), None)

    def value(self, exp: ExperimentResult | None) -> float | None:
        """The first finished seed's headline number (None: no such experiment or run)."""
        run = exp.first() if exp else None
        return run.value if run else None

    def finished(self, task: str, profile: str = "reference") -> list[ExperimentResult]:
        """The task's main experiments of ``profile`` that have a finished run."""
        return [e for e in self.experiments(task, profile) if e.first()]

    def ablation_pairs(self, flaw: str) -> list[tuple[ExperimentResult, ExperimentResult | None]]:
        """(ablation, the fixed experiment it puts the flaw back into) for each ablation of
        ``flaw``; the second is None where the manifest lacks it."""
        return [(e, self.find(e.profile, e.task, e.baseline or ""))
                for e in self.results.experiments if e.flaw == flaw]

    # -- writing ---------------------------------------------------------------------
    def figure(self, name: str, draw: Callable[[Path], Path | None], caption: str) -> None:
        """Draw ``figures/name`` with ``draw(path)`` and add it; a record without a field
        it needs, or nothing to draw (None), leaves a sentence saying so instead."""
        try:
            path = draw(self.figures / name)
        except (KeyError, ValueError, TypeError, IndexError, UserError) as err:
            self.doc.paragraph(PROSE.say("figure_failed", caption=caption,
                                         error=f"{type(err).__name__}: {err}"))
            return
        if path is None:
            self.doc.paragraph(PROSE.say("figure_empty", caption=caption))
        else:
            self.doc.figure(path, caption)

    def comparison_table(self, task: str, first_column: str) -> None:
        """The task's main table: the reference, rnnlab with the reference's settings and
        rnnlab's tuned recipe (mean ± std over seeds), each with its difference."""
        names = list(dict.fromkeys(e.name for e in self.experiments(task)))
        rows, tuned_runs = [], []
        for name in names:
            tuned = self.find("tuned", task, name)
            # the reference profile's run, or one of a profile of its own (long-range, say)
            mine = self.find("reference", task, name) or next(
                (e for e in self.experiments(task) if e.name == name and e.profile != "tuned"),
                None)
            rows.append(comparison_row(mine, tuned, self.value(mine)))
            if tuned is not None:
                tuned_runs.append(tuned)
        self.doc.table([first_column, *COMPARISON_HEADER], rows, right=range(1, 7))
        self.seed_spread(tuned_runs)

    def seed_spread(self, experiments: list[ExperimentResult]) -> None:
        """Name each seed's number where the seeds disagree by more than a point."""
        notes = []
        for e in experiments:
            values = e.values()
            if len(values) > 1 and max(values) - min(values) > SEED_SPREAD_POINTS:
                per_seed = [f"{pct(r.value)} (seed {r.seed})" for r in e.done]
                notes.append(PROSE.say("seed_spread", label=e.label, per_seed=per_seed))
        if notes:
            self.doc.paragraph(PROSE.say("seed_spread_intro"))
            self.doc.bullets(notes)

    def below_reference(self, experiments: Sequence[ExperimentResult | None],
                        reason: Callable[[ExperimentResult], str] | None = None) -> None:
        """Say plainly where a reference-settings number is below the reference, and why:
        ``reason(exp)`` where the task gives one, else the test set's sampling noise."""
        below = [e for e in experiments if e is not None and e.reference is not None
                 and self.value(e) is not None and self.value(e) < e.reference]
        if below and all(e.quick for e in below):
            self.doc.paragraph(PROSE.say("below_all_quick", labels=[e.label for e in below]))
            return
        notes = [self.below_note(e, reason) for e in below]
        if notes:
            self.doc.paragraph(PROSE.say("below_intro"))
            self.doc.bullets(notes)

    def below_note(self, exp: ExperimentResult,
                   reason: Callable[[ExperimentResult], str] | None) -> str:
        mine, run = self.value(exp), exp.first()
        examples = (run.summary["test"].get("examples") or 0) if run and run.summary else 0
        se = binomial_se(mine, examples)
        tuned = self.find("tuned", exp.task, exp.name)
        tuned_values = tuned.values() if tuned else []
        return PROSE.say("below", label=exp.label, mine=mine, ref=exp.reference, quick=exp.quick,
                         reason=reason(exp) if reason and not exp.quick else "",
                         examples=examples, se=0.0 if math.isnan(se) else se,
                         tuned_mean=statistics.fmean(tuned_values) if tuned_values else None)

    def ablation_items(self, flaw: str) -> list[str]:
        """A flaw measured by ablations: each fixed run against the same run with the flaw
        put back (the explanation of a flaw that has no ``explain`` of its own)."""
        items = []
        for ablation, base in self.ablation_pairs(flaw):
            fixed, flawed = self.value(base), self.value(ablation)
            change = signed(fixed - flawed) if fixed is not None and flawed is not None else MISSING
            run = ablation.first()
            curve = run.curve("valid_accuracy", 100.0)[1] if run else []
            metric = metric_of([e for e in (base, ablation) if e])
            items.append(PROSE.say(
                "ablation", label=base.label if base else "?", metric=metric, fixed_value=fixed,
                flawed=flawed, ablation_label=ablation.label, change=change,
                falls=sum(b < a for a, b in itertools.pairwise(curve)),
                transitions=len(curve) - 1))
        return items or [self.not_measured]

    def default_section(self, task: str) -> None:
        """A section for any task: its comparison table, where it is below the reference,
        and validation accuracy by epoch of every main experiment (first finished seed)."""
        if not self.experiments(task):
            return
        title = task_class(task).title if task_class(task) else task
        metric = metric_of(self.experiments(task))
        self.doc.heading(2, PROSE.say("default_heading", title=title))
        self.doc.paragraph(PROSE.say("default_intro", metric=metric))
        self.comparison_table(task, "experiment")
        self.below_reference(self.experiments(task, "reference"))
        finished = [e for e in self.experiments(task) if e.first()]

        def draw(path: Path) -> Path | None:  # a record without the column: a sentence, no crash
            lines = [(f"{e.label} ({e.profile})", *e.first().curve("valid_accuracy", 100.0))
                     for e in finished]
            return plots.draw_lines(lines, path, xlabel="epoch", ylabel="validation accuracy (%)",
                                    integer_x=True, title=f"{title}: validation accuracy by epoch"
                                    ) if lines else None

        self.figure(f"{task}_valid_accuracy.png", draw, PROSE.say("default_curves", title=title))


def metric_of(experiments: Sequence[ExperimentResult]) -> str:
    """The headline's name, as a finished run of these experiments gave it; the base Task's
    name while none has finished (a task names its headline from a summary)."""
    return next((r.metric for e in experiments for r in e.done), DEFAULT_METRIC)


def comparison_row(mine: ExperimentResult | None, tuned: ExperimentResult | None,
                   value: float | None) -> list[str]:
    """One row of a comparison table (``value``: the reference-settings run's number)."""
    info = mine or tuned
    assert info is not None  # a row exists because one of the two does
    tuned_values = tuned.values() if tuned else []
    tuned_mean = statistics.fmean(tuned_values) if tuned_values else None
    return [info.label, pct(info.reference, NOT_REPORTED),
            pct(value) if mine else "not run", difference(value, info.reference, mine is not None),
            mean_std(tuned_values, len(tuned.runs)) if tuned else "not run",
            difference(tuned_mean, info.reference, tuned is not None),
            target_cell(tuned.target, tuned_mean) if tuned else "—"]


# -- the generic sections ------------------------------------------------------------------
def write_header(report: Report) -> None:
    experiments, runs = report.results.experiments, report.results.runs
    finished = sum(r.done for r in runs)
    profiles = sorted({e.profile for e in experiments})
    exercise = bool(set(profiles) & set(PROFILES)) or not profiles  # else: long-range only
    report.doc.heading(1, PROSE.say("title", exercise=exercise))
    report.doc.paragraph(PROSE.say("intro", profiles=profiles, finished=finished, runs=len(runs),
                                   exercise=exercise))
    if any(e.quick for e in experiments):
        report.doc.paragraph(PROSE.say("quick"))
    if finished < len(runs):
        report.doc.paragraph(PROSE.say("unfinished", count=len(runs) - finished))


def write_task_sections(report: Report) -> None:
    """Each registered task's own section, in registry order; then a generic section for
    each task of the manifest that is not registered here."""
    present = list(dict.fromkeys(e.task for e in report.results.experiments))
    for name in REGISTRY.names():
        if name in present:
            REGISTRY.get(name).report_section(report)
    for name in present:
        if task_class(name) is None:
            report.default_section(name)


def flaw_object(entry: dict) -> Flaw | None:
    """The registered Flaw of a reproduce.json flaw entry (None: its task is not registered,
    or no longer has that flaw)."""
    task = task_class(str(entry.get("task")))
    return next((f for f in task.flaws if f.id == entry.get("id")), None) if task else None


def flaw_items(report: Report, entry: dict) -> list[str]:
    flaw = flaw_object(entry)
    if flaw is not None and flaw.explain is not None:
        return flaw.explain(report)
    if flaw is not None or report.ablation_pairs(str(entry.get("id"))):
        return report.ablation_items(str(entry.get("id")))
    return [PROSE.say("not_explained", task=entry.get("task"))]


def write_flaws(report: Report) -> None:
    """Each flaw of the manifest whose task has experiments here: the flaw and its fix as
    reproduce.json recorded them, then what the records show."""
    entries = [f for f in report.results.manifest.get("flaws", []) if isinstance(f, dict)]
    tasks = {e.task for e in report.results.experiments}
    entries = [f for f in entries if f.get("task") in tasks]
    if not entries:
        return
    report.doc.heading(2, PROSE.say("flaws_heading"))
    for entry in entries:
        report.doc.heading(3, str(entry.get("flaw", entry.get("id"))))
        report.doc.paragraph(PROSE.say("fix", text=entry.get("fix", "")))
        report.doc.bullets(flaw_items(report, entry) or [PROSE.say("nothing_measured")])
    write_ablation_figure(report)


def write_ablation_figure(report: Report) -> None:
    """Validation accuracy by epoch of every fixed run beside its ablation (flaw put back)."""
    pairs = [(e, report.find(e.profile, e.task, e.baseline or ""))
             for e in report.results.experiments if e.role == "ablation"]
    shown = [(e, base) for e, base in pairs if e.first() and base is not None and base.first()]
    if not shown:
        return
    panels = [(f"{base.label}: {e.note}" if len(e.note) < 40 else e.label,
               [(f"{base.label} (fixed)", *base.first().curve("valid_accuracy", 100.0)),
                (f"{e.label} (flaw put back)", *e.first().curve("valid_accuracy", 100.0))])
              for e, base in shown]
    report.figure("flaws_ablations.png", lambda path: plots.draw_line_panels(
        panels, path, xlabel="epoch", ylabel="validation accuracy (%)",
        title="Validation accuracy by epoch, each fix against the same run with the flaw put back"),
        PROSE.say("ablation_figure"))


ENVIRONMENT_KEYS = ("rnnlab", "torch", "python", "threads", "device", "platform")


def write_environment(report: Report) -> None:
    """Where the runs ran (one row per distinct environment) and how long each took."""
    doc = report.doc
    doc.heading(2, PROSE.say("environment_heading"))
    envs: dict[tuple, int] = {}
    for run in report.results.runs:
        if run.summary is not None:
            env = run.summary.get("environment", {})
            key = tuple(env.get(k, "?") for k in ENVIRONMENT_KEYS)
            envs[key] = envs.get(key, 0) + 1
    if envs:
        doc.table(["rnnlab", "torch", "Python", "threads", "device", "platform", "runs"],
                  [[*map(str, key), str(n)] for key, n in envs.items()], right=[3, 6])
    rows, total_train, total_wall = [], 0.0, 0.0
    for e in report.results.experiments:
        for run in e.runs:
            summary = run.summary or {}
            train_s, wall_s = summary.get("train_seconds"), summary.get("wall_seconds")
            total_train += train_s or 0.0
            total_wall += wall_s or 0.0
            status = "finished" if run.done else (run.problem or MISSING)
            rows.append([e.id, str(run.seed), status, str(summary.get("epochs", len(run.metrics))),
                         seconds(train_s), seconds(wall_s)])
    doc.paragraph(PROSE.say("wall_time", train=total_train, wall=total_wall))
    doc.table(["run", "seed", "status", "epochs", "train s", "wall s"], rows, right=[1, 3, 4, 5])


def model_cell(model: dict) -> str:
    """``BiLSTM h100 last_step``: cell, hidden size, and the readout where not h_n."""
    readout = model.get("readout", "h_n")
    return (("Bi" if model.get("bidirectional") else "") + str(model.get("cell", "?")).upper()
            + f" h{model.get('hidden_size', '?')}" + (f" {readout}" if readout != "h_n" else ""))


def train_cell(train: dict) -> str:
    """``7 ep, batch 500, lr 0.01, cosine, clip 1.0``."""
    return (f"{train.get('epochs')} ep, batch {train.get('batch_size')}, lr {train.get('lr')}, "
            f"{train.get('schedule')}" + (f", clip {train['clip']}" if train.get("clip") else ""))


def write_settings(report: Report) -> None:
    report.doc.heading(2, PROSE.say("settings_heading"))
    rows = [[e.id, e.role, model_cell(e.model), train_cell(e.train), ", ".join(map(str, e.seeds)),
             e.note] for e in report.results.experiments]
    report.doc.table(["experiment", "role", "model", "training", "seeds", "note"], rows)


def build_report(out_dir: str | Path, data_dir: str | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html`` into
    ``out_dir``."""
    out = Path(out_dir)
    report = Report(out, load_results(out), data_dir)
    write_header(report)
    write_task_sections(report)
    write_flaws(report)
    write_environment(report)
    write_settings(report)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(report.doc, out))
    atomic_write_text(html_path, render_html(report.doc, "rnnlab reproduction report"))
    return md_path, html_path
