"""``rnnlab report RUNS_DIR``: the report, written from run records only.

Reads ``reproduce.json`` (the experiments, the reference's numbers, the flaws) and
each run's record (config.json, metrics.jsonl, summary.json, test_predictions.csv,
examples.json); writes ``report.md`` with ``figures/*.png`` beside it, and a
self-contained ``report.html`` (figures embedded). No number is typed in here: a
run that is not finished shows as "missing".
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.core import plots
from rnnlab.core.errors import UserError
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.records import RunRecord
from rnnlab.tasks.addition.data import parse_lengths
from rnnlab.tasks.addition.study import label_from_config
from rnnlab.tasks.mnist import load_test_images
from rnnlab.tasks.mnist.data import CLASS_NAMES, MnistConfig, split_sizes
from rnnlab.tasks.recall.study import draw_examples_table, read_examples

MISSING = "missing"
NOT_REPORTED = "not reported"
NOT_MEASURED = ("Not measured: the ablation run is not part of this reproduction "
                "(add --ablations to `rnnlab reproduce` to run it).")
ADDITION_REFERENCE_LENGTHS = 20  # the exercise averaged bit accuracy over L = 1..20


# -- metrics read from records ---------------------------------------------------------
def reference_rows(summary: dict) -> list[dict]:
    """An addition run's per-length test rows at the lengths the exercise averaged (1..20)."""
    return [r for r in summary["test"].get("by_length", []) if r["length"] <= ADDITION_REFERENCE_LENGTHS]


def mean_percent(rows: list[dict], key: str) -> float | None:
    """The mean of ``key`` over ``rows``, in percent (None without rows)."""
    return 100 * statistics.fmean(r[key] for r in rows) if rows else None


def headline(task: str, summary: dict) -> tuple[str, float]:
    """(name, value in percent) of the number a task's table compares."""
    test = summary["test"]
    if task == "addition":
        rows = reference_rows(summary)
        if rows:
            return "mean bit accuracy over L = 1..20", mean_percent(rows, "bit_accuracy")
        return "mean bit accuracy", 100 * test["bit_accuracy_mean"]
    return "test accuracy", 100 * test["accuracy"]


SEED_SPREAD_POINTS = 1.0  # a tuned result whose seeds differ by more gets each seed listed


def binomial_se(percent: float, n: int) -> float:
    """Standard error, in points, of an accuracy measured on ``n`` independent items."""
    p = percent / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.nan


def trained_and_other_lengths(run: Run) -> tuple[float | None, float | None]:
    """An addition run's mean bit accuracy (%) at its training lengths and at the other
    lengths 1..20."""
    trained = set(parse_lengths(str(run.config["task_config"]["train_lengths"])))
    rows = reference_rows(run.summary)
    return (mean_percent([r for r in rows if r["length"] in trained], "bit_accuracy"),
            mean_percent([r for r in rows if r["length"] not in trained], "bit_accuracy"))


def mnist_split_sizes(run: Run) -> tuple[int, int]:
    """(training, validation) images of an MNIST run, from its config.json."""
    task = run.config.get("task_config", {})
    return split_sizes(task.get("num_valid", MnistConfig.num_valid), task.get("limit"))


@dataclass
class Run:
    seed: int
    path: Path
    config: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    summary: dict | None = None  # None: not finished (or unreadable)
    problem: str = ""

    @property
    def record(self) -> RunRecord:
        return RunRecord(self.path)

    @property
    def done(self) -> bool:
        return self.summary is not None


@dataclass
class Exp:
    info: dict  # this experiment's entry of reproduce.json
    runs: list[Run]

    def __getattr__(self, key: str) -> Any:  # exp.task, exp.name, exp.label, ...
        try:
            return self.info[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.done]

    def values(self) -> list[float]:
        return [headline(self.task, r.summary)[1] for r in self.done]

    def first(self) -> Run | None:
        return self.done[0] if self.done else None


def read_run(out: Path, relative: str, seed: int) -> Run:
    run = Run(seed, out / relative)
    record = RunRecord(run.path)
    try:
        if (run.path / "config.json").is_file():
            run.config = record.config()
        run.metrics = record.metrics()
        if record.is_complete:
            run.summary = record.summary()
    except UserError as err:
        run.summary, run.problem = None, str(err)
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


def load_experiments(out: Path, manifest: dict) -> list[Exp]:
    experiments = []
    for info in manifest["experiments"]:
        if not isinstance(info, dict) or not {"task", "name", "profile", "runs"} <= info.keys():
            raise UserError(f"{out / 'reproduce.json'} has an experiment without task, name, profile or runs")
        seeds = info.get("seeds") or [int(p.rsplit("seed-", 1)[-1]) for p in info["runs"]]
        experiments.append(Exp({"label": info["name"], **info},
                               [read_run(out, rel, seed) for rel, seed in zip(info["runs"], seeds, strict=True)]))
    return experiments


# -- a tiny document model, rendered to Markdown and to HTML ---------------------------
@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows], set(right)))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None:
            self.blocks.append(("p", f"Figure not drawn: {caption} (no finished runs to draw it from)."))
        else:
            self.blocks.append(("fig", path, caption))


def render_markdown(doc: Doc, base: Path) -> str:
    lines: list[str] = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows, right = block
            cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
            lines.append("| " + " | ".join(cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|")
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "fig":
            lines += [f"![{block[2]}]({block[1].relative_to(base).as_posix()})", "", f"*{block[2]}*", ""]
    return "\n".join(lines).rstrip() + "\n"


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ccc; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; } th { background: #f3f3f3; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #b00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
"""


def render_html(doc: Doc, title: str) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
             f"</title><style>{CSS}</style></head><body>"]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            _, header, rows, right = block
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            body = []
            for row in rows:
                cells = []
                for i, c in enumerate(row):
                    classes = " ".join(k for k, on in (("r", i in right), ("missing", MISSING in str(c))) if on)
                    cells.append(f"<td class=\"{classes}\">{html.escape(str(c))}</td>" if classes
                                 else f"<td>{html.escape(str(c))}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        elif kind == "fig":
            data = base64.b64encode(block[1].read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(block[2])}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# -- formatting ------------------------------------------------------------------------
def pct(value: float | None, missing: str = MISSING) -> str:
    return missing if value is None else f"{value:.2f}"


def signed(value: float | None, missing: str = MISSING) -> str:
    return missing if value is None else f"{value:+.2f}"


def mean_std(values: Sequence[float], expected: int) -> str:
    if not values:
        return MISSING
    n = f"n={len(values)}" + (f" of {expected}" if len(values) < expected else "")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f} ({n})"


def difference(value: float | None, ref: float | None, ran: bool) -> str:
    if ref is None:
        return NOT_REPORTED
    return signed(value - ref) if value is not None else (MISSING if ran else "—")


def target_cell(target: float | None, value: float | None) -> str:
    if target is None:
        return "—"
    return f"{target:.2f}" + ("" if value is None else " (met)" if value >= target - 1e-9 else " (not met)")


def seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


# -- the report --------------------------------------------------------------------------
class Report:
    def __init__(self, out: Path, manifest: dict, experiments: list[Exp], data_dir: str | None):
        self.out, self.manifest, self.experiments, self.data_dir = out, manifest, experiments, data_dir
        self.figures = out / "figures"
        self.doc = Doc()

    # lookups
    def find(self, profile: str, task: str, name: str) -> Exp | None:
        return next((e for e in self.experiments if (e.profile, e.task, e.name) == (profile, task, name)), None)

    def of(self, task: str, profile: str | None = None, role: str | None = "main") -> list[Exp]:
        return [e for e in self.experiments if e.task == task and (profile is None or e.profile == profile)
                and (role is None or e.info.get("role", "main") == role)]

    def value(self, exp: Exp | None) -> float | None:
        """The first finished seed's headline number (reference-settings runs have one seed)."""
        run = exp.first() if exp else None
        return headline(exp.task, run.summary)[1] if run else None

    def fig(self, name: str, draw: Callable[[Path], Path | None], caption: str) -> None:
        try:
            path = draw(self.figures / name)
        except (KeyError, ValueError, TypeError, IndexError, UserError) as err:  # a record without a field
            self.doc.p(f"Figure not drawn: {caption} ({type(err).__name__}: {err}).")
            return
        self.doc.figure(path, caption)

    # -- sections --------------------------------------------------------------------
    def build(self) -> Doc:
        d = self.doc
        d.h(1, "rnnlab: reproduction of the recurrent-networks exercise")
        profiles = sorted({e.profile for e in self.experiments})
        runs = [r for e in self.experiments for r in e.runs]
        finished = sum(r.done for r in runs)
        d.p(f"Profiles: {', '.join(profiles) or 'none'}. Runs finished: {finished} of {len(runs)}. "
            "Every number below is read from the run records under runs/; the reference column is "
            "the exercise's reported result (../shared/spec/assignment.md). Accuracies are in percent; "
            "differences are rnnlab minus reference, in points.")
        if any(e.info.get("quick") for e in self.experiments):
            d.p("This is a --quick reproduction: every configuration ran on a tiny budget (a few "
                "thousand images, two epochs), so its numbers only show that everything runs; they are "
                "not comparable with the reference. Run `rnnlab reproduce --profile reference` for the "
                "real comparison.")
        if finished < len(runs):
            d.p(f"{len(runs) - finished} run(s) are not finished and show as \"missing\"; run the same "
                "`rnnlab reproduce` command again to complete them (finished runs are reused).")
        self.mnist()
        self.recall()
        self.addition()
        self.flaws()
        self.environment()
        self.settings()
        return d

    def comparison_table(self, task: str, first_column: str) -> list[tuple[Exp | None, Exp | None, float | None, float | None]]:
        """The task's table: reference, reference settings, tuned (mean ± std), differences."""
        names = list(dict.fromkeys(e.name for e in self.of(task)))
        rows, result = [], []
        for name in names:
            ref_exp, tuned_exp = self.find("reference", task, name), self.find("tuned", task, name)
            info = (ref_exp or tuned_exp).info
            ref = info.get("reference")
            mine = self.value(ref_exp)
            tuned_values = tuned_exp.values() if tuned_exp else []
            tuned_mean = statistics.fmean(tuned_values) if tuned_values else None
            target = tuned_exp.info.get("target") if tuned_exp else None
            label = (ref_exp or tuned_exp).label
            rows.append([label, pct(ref, NOT_REPORTED),
                         pct(mine) if ref_exp else "not run", difference(mine, ref, ref_exp is not None),
                         mean_std(tuned_values, len(tuned_exp.runs)) if tuned_exp else "not run",
                         difference(tuned_mean, ref, tuned_exp is not None),
                         target_cell(target, tuned_mean) if tuned_exp else "—"])
            result.append((ref_exp, tuned_exp, mine, tuned_mean))
        self.doc.table([first_column, "reference", "rnnlab, reference settings", "difference",
                        "rnnlab tuned (mean ± std over seeds)", "difference", "tuned target"],
                       rows, right=range(1, 7))
        self.seed_spread([tuned for _ref, tuned, _mine, _mean in result if tuned is not None])
        return result

    def seed_spread(self, experiments: list[Exp]) -> None:
        """Name each seed's number where the seeds disagree by more than a point."""
        notes = []
        for e in experiments:
            values = e.values()
            if len(values) > 1 and max(values) - min(values) > SEED_SPREAD_POINTS:
                per_seed = ", ".join(f"{pct(v)} (seed {r.seed})" for v, r in zip(values, e.done, strict=True))
                notes.append(f"{e.label}, tuned: {per_seed}. This recipe depends on the seed: some "
                             "initialisations find the solution and others stall in a partial one.")
        if notes:
            self.doc.p("Where the seeds disagree by more than a point:")
            self.doc.ul(notes)

    def below_reference(self, rows) -> None:
        """Say plainly where a reference-settings number is below the reference, and why."""
        below = [r for r in rows if r[0] is not None and r[2] is not None
                 and r[0].info.get("reference") is not None and r[2] < r[0].info["reference"]]
        if below and all(r[0].info.get("quick") for r in below):
            self.doc.p(f"Below the reference with the reference's settings: {', '.join(r[0].label for r in below)}. "
                       "These are --quick runs (a tiny budget): the gaps say nothing about the method.")
            return
        notes = []
        for ref_exp, _tuned, mine, tuned_mean in rows:
            if ref_exp is None or mine is None or ref_exp.info.get("reference") is None:
                continue
            ref = ref_exp.info["reference"]
            if mine >= ref:
                continue
            run = ref_exp.first()
            n = run.summary["test"].get("examples") or run.summary["test"].get("pairs") or 0
            se = binomial_se(mine, n) if ref_exp.task != "addition" else math.nan
            text = (f"{ref_exp.label}: rnnlab with the reference's settings scored {mine:.2f}%, "
                    f"{ref - mine:.2f} points below the reference's {ref:.2f}%.")
            if ref_exp.info.get("quick"):
                text += " This is a --quick run (tiny budget): the gap says nothing about the method."
            elif not math.isnan(se):
                text += (f" One run is one draw: on a test set of {n:,} items an accuracy near "
                         f"{mine:.1f}% has a standard error of about {se:.2f} points (sqrt(p(1-p)/n)), "
                         f"so the gap is {(ref - mine) / se:.1f} standard errors")
                text += (", within the noise of one seed and one test set." if (ref - mine) <= 2 * se else
                         "; beyond test-set noise alone, so the seed (initialisation, data order) and the "
                         "reference's own single run also matter: the reference reported one seed, and "
                         "rnnlab scores the best-validation epoch rather than the last one.")
            else:
                text += self.addition_gap_reason(ref_exp)
            if tuned_mean is not None:
                text += f" rnnlab's tuned recipe reaches {tuned_mean:.2f}% (mean over seeds)."
            notes.append(text)
        if notes:
            self.doc.p("Where rnnlab with the reference's settings is below the reference:")
            self.doc.ul(notes)

    def addition_gap_reason(self, exp: Exp) -> str:
        """Why an addition run with the reference's settings scores below the reference."""
        run = exp.first()
        lengths = str(run.config["task_config"].get("train_lengths", ""))
        if not lengths.isdigit():
            return (" The exercise's number is one seed's average over 20 lengths; rnnlab's per-length "
                    "curves below show where the difference comes from.")
        at, others = trained_and_other_lengths(run)
        mixed = self.value(self.find("reference", "addition", "h5-mse"))
        text = (f" The reference's run was in fact trained on the mixed lengths 1..20 (a flaw, below); rnnlab "
                f"trains on L = {lengths} only, so the other lengths were never seen: {pct(at)}% at "
                f"L = {lengths}, {pct(others)}% on average over the others.")
        if mixed is not None:
            text += f" Trained on 1..20 as the reference really was, rnnlab scores {pct(mixed)}%."
        return text

    def main_runs(self, task: str, profile: str = "reference") -> list[tuple[str, Run, Exp]]:
        """(label, first finished run, experiment) of each main experiment that has one."""
        return [(e.label, e.first(), e) for e in self.of(task, profile) if e.first()]

    @staticmethod
    def curve(label: str, run: Run, key: str, scale: float = 1.0) -> tuple[str, list[int], list[float]]:
        """One line of a by-epoch figure, from the run's metrics."""
        return label, [m["epoch"] for m in run.metrics], [scale * m[key] for m in run.metrics]

    # Task 1 ------------------------------------------------------------------------------
    def mnist(self) -> None:
        if not self.of("mnist"):
            return
        d = self.doc
        d.h(2, "Task 1: row-by-row MNIST")
        sizes = sorted({r.summary["test"].get("examples") for e in self.of("mnist") for r in e.done} - {None})
        d.p("Test accuracy (%) on " + (" / ".join(f"{n:,}" for n in sizes) if sizes else "the") +
            " test images (best-validation weights); each image is read as 28 rows of 28 pixels.")
        rows = self.comparison_table("mnist", "model")
        self.below_reference(rows)

        d.h(3, "Validation accuracy by epoch: rnnlab (reference settings) and the reference")
        refs = [e for e in self.of("mnist", "reference")]
        width = max([len(e.info.get("reference_curve") or []) for e in refs] +
                    [len(e.first().metrics) for e in refs if e.first()] + [1])
        table = []
        for e in refs:
            curve = e.info.get("reference_curve")
            if curve:
                table.append([e.label, "reference", *[pct(v) for v in curve], *[""] * (width - len(curve))])
            metrics = e.runs[0].metrics if e.runs else []
            values = [pct(100 * m["valid_accuracy"]) for m in metrics]
            table.append([e.label, "rnnlab", *(values or [MISSING]),
                          *[""] * (width - max(len(values), 1))])
        d.table(["model", "source", *[f"epoch {i}" for i in range(1, width + 1)]], table, right=range(2, width + 2))

        runs = self.main_runs("mnist")
        series = lambda key, scale=1.0, src=runs: [self.curve(label, r, key, scale)  # noqa: E731
                                                   for label, r, _ in src]
        if runs:
            self.fig("mnist_train_loss.png", lambda p: plots.draw_lines(
                series("train_loss"), p, xlabel="epoch", ylabel="training loss (cross-entropy)",
                title="Task 1: training loss by epoch (reference settings)", integer_x=True),
                "Task 1: training loss against epoch, every model (reference settings)")
            self.fig("mnist_valid_loss.png", lambda p: plots.draw_lines(
                series("valid_loss"), p, xlabel="epoch", ylabel="validation loss (cross-entropy)",
                title="Task 1: validation loss by epoch (reference settings)", integer_x=True),
                "Task 1: validation loss against epoch, every model (reference settings)")
            dashed = [(f"{e.label} (reference)", range(1, len(e.info["reference_curve"]) + 1),
                       e.info["reference_curve"]) for _, _, e in runs if e.info.get("reference_curve")]
            self.fig("mnist_valid_accuracy.png", lambda p: plots.draw_lines(
                series("valid_accuracy", 100.0), p, dashed=dashed, xlabel="epoch",
                ylabel="validation accuracy (%)", integer_x=True,
                title="Task 1: validation accuracy by epoch (solid: rnnlab, dashed: reference)"),
                "Task 1: validation accuracy against epoch, rnnlab (reference settings, solid) and the "
                "reference's curves (dashed)")
            self.fig("mnist_test_loss_per_batch.png", lambda p: plots.draw_lines(
                [(label, range(1, len(r.summary["test"]["batch_losses"]) + 1), r.summary["test"]["batch_losses"])
                 for label, r, _ in runs if r.summary["test"].get("batch_losses")], p,
                xlabel="test batch", ylabel="test loss (cross-entropy)", integer_x=True,
                title="Task 1: test loss per batch (best-validation weights)"),
                "Task 1: test loss per test batch, every model (reference settings)")
            best_label, best, _ = max(runs, key=lambda t: t[1].summary["test"]["accuracy"])
            predictions = plots.read_predictions(best.record)
            if predictions:

                dataset = best.config["task_config"].get("dataset", "mnist")
                names = CLASS_NAMES.get(dataset, [str(i) for i in range(10)])
                images = load_test_images(dataset, self.data_dir)
                if images is not None:
                    self.fig("mnist_test_examples.png", lambda p: plots.draw_image_grid(
                        images, predictions[:10], names, p, ""),  # the caption says it (a title would overlap)
                        f"Task 1: the first 10 test images with {best_label}'s prediction (pred) and the true "
                        "label (true); wrong ones in red (reference settings)")
                else:
                    d.p("Figure not drawn: the row of test images (the MNIST test images were not found; "
                        "pass --data-dir).")
                self.fig("mnist_confusion.png", lambda p: plots.draw_confusion(
                    plots.confusion_matrix(predictions, len(names)), names, p),
                    f"Task 1 (new): test confusion matrix of {best_label} (reference settings), "
                    "rows true, columns predicted")
        else:
            d.p("Figures not drawn: no finished Task 1 runs with reference settings.")
        tuned = self.main_runs("mnist", "tuned")
        if tuned:
            self.fig("mnist_tuned_valid_accuracy.png", lambda p: plots.draw_lines(
                series("valid_accuracy", 100.0, tuned), p, xlabel="epoch", ylabel="validation accuracy (%)",
                integer_x=True, title="Task 1: validation accuracy by epoch, tuned recipe (first seed)"),
                "Task 1 (new): validation accuracy against epoch, rnnlab's tuned recipe (first seed)")

    # Task 2 ------------------------------------------------------------------------------
    def recall(self) -> None:
        if not self.of("recall"):
            return
        d = self.doc
        d.h(2, "Task 2: recall the digit at position K")
        cfg = self.of("recall")[0].info.get("task_config", {})
        k = cfg.get("k", 1)
        d.p(f"Test accuracy (%) of an LSTM reading random digit sequences (lengths {cfg.get('min_length')}.."
            f"{cfg.get('max_length')}) and answering the digit at zero-based position K = {k}. The reference "
            "reported only one hidden size.")
        rows = self.comparison_table("recall", "model")
        self.below_reference(rows)
        sizes = sorted({(r.summary["test"].get("examples"), e.profile) for e in self.of("recall") for r in e.done
                        if r.summary["test"].get("examples")}, key=str)
        reported = [e for e in self.of("recall", "reference") if e.info.get("reference") is not None]
        if sizes:
            text = "Test set sizes: " + "; ".join(f"{p} profile {n:,} sequences" for n, p in sizes) + "."
            n = reported[0].info.get("task_config", {}).get("test_size", 0) if reported else 0
            if reported and n and not reported[0].info.get("quick"):
                ref = reported[0].info["reference"]
                text += (f" The reference's test set had {n} sequences: there an accuracy near {ref:.0f}% has a "
                         f"standard error of about {binomial_se(ref, n):.0f} points, so its {ref:.0f}% is a "
                         "coarse number.")
            d.p(text)
        runs = self.main_runs("recall")
        if runs:
            self.fig("recall_train_loss.png", lambda p: plots.draw_lines(
                [self.curve(label, r, "train_loss") for label, r, _ in runs], p, xlabel="epoch",
                ylabel="training loss (cross-entropy)",
                integer_x=True, title="Task 2: training loss by epoch (reference settings)"),
                "Task 2: training loss against epoch, one line per hidden size (reference settings)")
            self.fig("recall_valid_accuracy.png", lambda p: plots.draw_lines(
                [self.curve(label, r, "valid_accuracy", 100.0) for label, r, _ in runs], p, xlabel="epoch",
                ylabel="validation accuracy (%)",
                integer_x=True, title="Task 2: validation accuracy by epoch (reference settings)"),
                "Task 2: validation accuracy against epoch, one line per hidden size (reference settings)")
            label, run, _ = max(runs, key=lambda t: t[1].config["model"]["hidden_size"])
            if (run.path / "examples.json").is_file():
                self.fig("recall_examples.png", lambda p: self.draw_recall_examples(run, k, p, label),
                         f"Task 2: example test sequences of lengths 3..7 with {label}'s prediction "
                         "(reference settings; wrong in red)")
            else:
                d.p("Figure not drawn: example sequences (the run has no examples.json).")
        every = self.main_runs("recall") + self.main_runs("recall", "tuned")
        by_length = [(f"{label} ({e.profile})", [r["length"] for r in run.summary["test"]["by_length"]],
                      [100 * r["accuracy"] for r in run.summary["test"]["by_length"]])
                     for label, run, e in every if run.summary["test"].get("by_length")]
        if by_length:
            self.fig("recall_accuracy_by_length.png", lambda p: plots.draw_lines(
                by_length, p, xlabel="sequence length", ylabel="test accuracy (%)", integer_x=True,
                ylim=(-2, 102), title="Task 2: test accuracy by sequence length"),
                "Task 2 (new): test accuracy against sequence length, reference settings and tuned (first seed)")

    @staticmethod
    def draw_recall_examples(run: Run, k: int, path: Path, label: str) -> Path | None:
        """The run's example sequences of lengths 3..7 (the exercise showed those)."""
        examples = read_examples(run.record)
        chosen = [e for e in examples.get("examples", []) if 3 <= len(e["sequence"]) <= 7]
        return draw_examples_table({"k": examples.get("k", k), "examples": chosen, "errors": []}, path,
                                   f"{label}: test sequences of lengths 3..7")

    # Task 3 ------------------------------------------------------------------------------
    @staticmethod
    def addition_label(run: Run) -> str:
        """A legend entry built from the run's own config.json (never typed in)."""
        return label_from_config(run.config)

    def addition(self) -> None:
        if not self.of("addition"):
            return
        d = self.doc
        d.h(2, "Task 3: adding two binary numbers")
        pairs = sorted({e.info.get("task_config", {}).get("eval_pairs") for e in self.of("addition", "reference")} - {None})
        d.p(f"Bit accuracy (%): the share of output bits equal to the target, averaged over input lengths "
            f"L = 1..{ADDITION_REFERENCE_LENGTHS}" + (f" ({'/'.join(map(str, pairs))} pairs per length in the "
                                                      "reference settings)" if pairs else "") +
            ". Whole-number accuracy is the share of sums with every bit right.")
        names = [e.name for e in self.of("addition", "reference")]
        table = []
        for name in names:
            e = self.find("reference", "addition", name)
            run = e.first()
            mine = self.value(e)
            whole = mean_percent(reference_rows(run.summary), "number_accuracy") if run else None
            table.append([e.label, pct(e.info.get("reference"), NOT_REPORTED), pct(mine),
                          difference(mine, e.info.get("reference"), True), pct(whole)])
        if table:
            d.p("Reference settings (one seed each):")
            d.table(["experiment", "reference", "rnnlab, reference settings", "difference",
                     "rnnlab whole-number accuracy, L = 1..20"], table, right=range(1, 5))
        self.below_reference([(self.find("reference", "addition", n), None, self.value(self.find("reference", "addition", n)), None)
                              for n in names])
        tuned = self.of("addition", "tuned")
        for e in tuned:
            lengths = sorted({r["length"] for run in e.done for r in run.summary["test"].get("by_length", [])})
            long = [n for n in lengths if n > 20]
            header = ["", "mean bit accuracy, L = 1..20", "mean whole-number accuracy, L = 1..20",
                      *[f"whole-number accuracy, L = {n}" for n in long]]
            bit = e.values()
            whole_short = [mean_percent(reference_rows(run.summary), "number_accuracy") for run in e.done]
            per_long = [[100 * r["number_accuracy"] for run in e.done for r in run.summary["test"]["by_length"]
                         if r["length"] == n] for n in long]
            whole_mean = statistics.fmean(whole_short) if whole_short else None
            d.p(f"Tuned: {e.label}. Target: {target_cell(e.info.get('target'), whole_mean)} whole-number "
                f"accuracy over L = 1..{ADDITION_REFERENCE_LENGTHS} (mean over seeds); "
                f"the reference's best run reported {pct(e.info.get('reference'), NOT_REPORTED)}% bit accuracy.")
            d.table(header, [[f"rnnlab tuned ({len(e.done)} of {len(e.runs)} seeds)", mean_std(bit, len(e.runs)),
                              mean_std(whole_short, len(e.runs)), *[mean_std(v, len(e.runs)) for v in per_long]]],
                    right=range(1, len(header)))

        runs = {e.name: (e.first(), e) for e in self.of("addition", "reference") if e.first()}
        comparisons = [("Hidden 3 vs 10, MSE", ["h3-mse", "h10-mse"]), ("Hidden 5, MSE vs BCE", ["h5-mse", "h5-bce"]),
                       ("Hidden 5, MSE, trained on one length", ["h5-mse-len3", "h5-mse-len5", "h5-mse-len10"])]

        def panels(key: str):
            return [(title, [(self.addition_label(runs[n][0]),
                             *self.by_length(runs[n][0], key, ADDITION_REFERENCE_LENGTHS))
                             for n in group if n in runs]) for title, group in comparisons]

        if runs:
            self.fig("addition_bit_accuracy_by_length.png", lambda p: plots.draw_line_panels(
                panels("bit_accuracy"), p, xlabel="input length L (bits)", ylabel="bit accuracy (%)",
                ylim=(-2, 102), title="Task 3: bit accuracy against input length (reference settings); "
                "legends from each run's config.json"),
                "Task 3: bit accuracy against input length, one line per model, in the exercise's three "
                "comparisons (reference settings)")
            self.fig("addition_number_accuracy_by_length.png", lambda p: plots.draw_line_panels(
                panels("number_accuracy"), p, xlabel="input length L (bits)",
                ylabel="whole-number accuracy (%)", ylim=(-2, 102),
                title="Task 3: whole-number accuracy against input length (reference settings)"),
                "Task 3 (new): whole-number accuracy (every bit of the sum right) against input length")
        shown = [e for e in tuned if e.first()] + [runs[n][1] for n in ("h5-bce", "h5-mse-len10") if n in runs]
        general = [(f"{self.addition_label(e.first())} ({e.profile})",
                    *self.by_length(e.first(), "number_accuracy")) for e in shown]
        first_tuned = next((e.first() for e in tuned if e.first()), None)
        if first_tuned is not None:
            trained = first_tuned.config["task_config"]["train_lengths"]
            self.fig("addition_generalisation.png", lambda p: plots.draw_lines(
                general, p, xlabel="input length L (bits, log scale)", ylabel="whole-number accuracy (%)",
                log_x=True, ylim=(-2, 102),
                title=f"Task 3: generalisation to long inputs (tuned: trained on L = {trained})"),
                "Task 3 (new): whole-number accuracy against input length up to the longest scored, "
                "tuned recipe (first seed) and reference-settings runs")

    @staticmethod
    def by_length(run: Run, key: str, longest: int | None = None) -> tuple[list[int], list[float]]:
        rows = [r for r in run.summary["test"].get("by_length", []) if longest is None or r["length"] <= longest]
        return [r["length"] for r in rows], [100 * r[key] for r in rows]

    # Flaws -------------------------------------------------------------------------------
    def flaws(self) -> None:
        flaws = self.manifest.get("flaws", [])
        if not flaws:
            return
        d = self.doc
        d.h(2, "The exercise's flaws, and what rnnlab measured when fixing them")
        tasks = {e.task for e in self.experiments}
        for flaw in flaws:
            if flaw.get("task") not in tasks:
                continue
            d.h(3, flaw["flaw"])
            d.p("Fix: " + flaw["fix"])
            measure = getattr(self, "flaw_" + flaw["id"].replace("-", "_"), None)
            items = measure() if measure else self.ablation_items(flaw["id"])
            d.ul(items or ["Not measured in this reproduction."])
        pairs = [(e, self.find(e.profile, e.task, e.info.get("baseline") or "")) for e in self.experiments
                 if e.info.get("role") == "ablation" and e.task == "mnist"]
        pairs = [(e, b) for e, b in pairs if e.first() and b is not None and b.first()]
        if pairs:
            panels = [(f"{b.label}: {e.note}" if len(e.note) < 40 else e.label,
                       [self.curve(f"{b.label} (fixed)", b.first(), "valid_accuracy", 100.0),
                        self.curve(f"{e.label} (flaw put back)", e.first(), "valid_accuracy", 100.0)])
                      for e, b in pairs]
            self.fig("flaws_mnist_ablations.png", lambda p: plots.draw_line_panels(
                panels, p, xlabel="epoch", ylabel="validation accuracy (%)",
                title="Task 1: validation accuracy by epoch, each fix against the same run with the flaw put back"),
                "Flaws: validation accuracy against epoch of each fixed run and its ablation (the flaw put back)")

    def ablation_items(self, flaw: str) -> list[str]:
        """Any flaw measured by ablations: the fixed run against the same run with the flaw back."""
        items = []
        for ablation, base in self.ablation_pair(flaw):
            fixed, flawed = self.value(base), self.value(ablation)
            change = signed(fixed - flawed) if None not in (fixed, flawed) else MISSING
            metric = "test accuracy" if ablation.task != "addition" else "mean bit accuracy"
            curve = [100 * m["valid_accuracy"] for m in ablation.first().metrics] if ablation.first() else []
            falls = sum(b < a for a, b in itertools.pairwise(curve))
            items.append(f"{base.label if base else '?'}: {metric} {pct(fixed)}% (fixed) vs {pct(flawed)}% with "
                         f"the flaw put back ({ablation.label}); the fix changed it by {change} points"
                         + (f"; with the flaw the validation accuracy fell in {falls} of {len(curve) - 1} epoch "
                            "transitions." if len(curve) > 1 else "."))
        return items or [NOT_MEASURED]

    def ablation_pair(self, flaw: str) -> list[tuple[Exp, Exp | None]]:
        return [(e, self.find(e.profile, e.task, e.info.get("baseline") or "")) for e in self.experiments
                if e.info.get("flaw") == flaw]

    def flaw_bidirectional_readout(self) -> list[str]:
        items = []
        for name in ("birnn", "bilstm"):
            base = self.find("reference", "mnist", name)
            if base is None:
                continue
            fixed = self.value(base)
            text = (f"{base.label}: test accuracy {pct(fixed)}% with h_n (rnnlab); the reference reported "
                    f"{pct(base.info.get('reference'), NOT_REPORTED)}% with its last-step readout.")
            ablation = self.find("reference", "mnist", f"{name}-last-step")
            if ablation is not None:
                flawed = self.value(ablation)
                change = signed(fixed - flawed) if None not in (fixed, flawed) else MISSING
                text += (f" Same settings with the last-step readout put back: {pct(flawed)}%; fixing the "
                         f"readout changed the test accuracy by {change} points.")
            else:
                text += " " + NOT_MEASURED
            items.append(text)
        return items

    def flaw_rnn_unclipped(self) -> list[str]:
        def drops(values: Sequence[float]) -> str:
            if not values:
                return MISSING
            falls = [a - b for a, b in itertools.pairwise(values) if b < a]
            return (f"validation accuracy fell in {len(falls)} of {len(values) - 1} epoch transitions"
                    + (f" (largest fall {max(falls):.2f} points)" if falls else "")
                    + f", last epoch {values[-1]:.2f}%, best {max(values):.2f}%")

        base = self.find("reference", "mnist", "rnn")
        if base is None:
            return []
        items = []
        if base.info.get("reference_curve"):
            items.append(f"The reference's RNN: {drops(base.info['reference_curve'])}.")
        ablation = self.find("reference", "mnist", "rnn-no-clip")
        for exp, what in ((base, "rnnlab RNN, gradient norm clipped to 1.0 (fixed)"),
                          (ablation, "rnnlab RNN, no clipping (the reference's setting)")):
            if exp is None:
                items.append(f"{what}: {NOT_MEASURED}")
                continue
            run = exp.first()
            values = [100 * m["valid_accuracy"] for m in run.metrics] if run else []
            items.append(f"{what}: {drops(values)}; test accuracy {pct(self.value(exp))}%.")
        return items

    def flaw_hard_coded_batch(self) -> list[str]:
        sizes: dict[int, int] = {}
        partial = []
        for e in self.of("mnist", role=None):
            for run in e.done:
                batch = (run.config or {}).get("train", {}).get("batch_size")
                if batch is None:
                    continue
                sizes[batch] = sizes.get(batch, 0) + 1
                train, _ = mnist_split_sizes(run)
                if train % batch and not partial:
                    partial.append(f"e.g. {e.id}: {train:,} training images in batches of {batch}, the last "
                                   f"of {train % batch}.")
        if not sizes:
            return []
        used = ", ".join(f"{b} ({n} run{'s' if n > 1 else ''})" for b, n in sorted(sizes.items()))
        return [f"Finished Task 1 runs trained with batch sizes {used}, each epoch ending with whatever "
                "partial batch remains; the test sets were scored in batches of the evaluation size.", *partial]

    def flaw_valid_accuracy_over_100(self) -> list[str]:
        items = []
        for e in self.of("mnist", "reference")[:1] + self.of("mnist", "tuned")[:1]:
            run = e.first()
            if run is None or not run.metrics or not run.config:
                continue
            _, n = mnist_split_sizes(run)
            acc = run.metrics[-1]["valid_accuracy"]
            items.append(f"{e.label} ({e.profile}): {n:,} validation images; last-epoch validation accuracy "
                         f"correct/{n:,} = {100 * acc:.2f}%, where correct/100 would print {acc * n / 100:.2f}"
                         + (" (the same only because there are exactly 10,000 images)." if n == 10_000 else "."))
        return items

    def flaw_multiclass_ce(self) -> list[str]:
        items = []
        for ablation, base in self.ablation_pair("multiclass-ce"):
            flawed, fixed = self.value(ablation), self.value(base)
            items.append(f"{ablation.label}: mean bit accuracy {pct(flawed)}% vs "
                         f"{pct(fixed)}% with binary cross-entropy.")
            if flawed is not None and fixed is not None and abs(flawed - fixed) < 0.5:
                items.append("The two score alike here: the flawed loss still pushes the sigmoid of each 1-bit up "
                             "and, through the softmax, each 0-bit down, so thresholding at 0.5 works on this task. "
                             "What it lacks is a probability per bit: its loss cannot reach 0 even for a perfect "
                             "answer, and a pair whose sum is all zeros gives it no gradient at all.")
        mse, bce = self.find("reference", "addition", "h5-mse"), self.find("reference", "addition", "h5-bce")
        if not items:
            items.append(NOT_MEASURED)
        if bce is not None:
            items.append(f"Hidden 5 with binary cross-entropy: {pct(self.value(bce))}% mean bit accuracy "
                         f"(reference's flawed \"cross-entropy\": {pct(bce.info.get('reference'), NOT_REPORTED)}%); "
                         f"with MSE: {pct(self.value(mse))}%.")
        return items

    def flaw_fixed_length_not_used(self) -> list[str]:
        items = []
        mixed = self.find("reference", "addition", "h5-mse")
        if mixed is not None:
            items.append(f"What the reference really ran for all three (hidden 5, MSE, L = 1..20): "
                         f"{pct(self.value(mixed))}% mean bit accuracy.")
        for name in ("h5-mse-len3", "h5-mse-len5", "h5-mse-len10"):
            e = self.find("reference", "addition", name)
            if e is None:
                continue
            run = e.first()
            if run is None:
                items.append(f"{e.label}: {MISSING}.")
                continue
            at, others = trained_and_other_lengths(run)
            items.append(f"{e.label}: bit accuracy {pct(at)}% at the trained "
                         f"length, {pct(others)}% on average over the other "
                         f"lengths 1..20 (reference reported {pct(e.info.get('reference'), NOT_REPORTED)}% for its "
                         "mixed-length run).")
        return items

    def flaw_swapped_legends(self) -> list[str]:
        labels = [f"{e.name}: \"{self.addition_label(e.first())}\"" for e in self.of("addition", role=None)
                  if e.first()]
        return ["Legend entries of the Task 3 figures, as built from each run's config.json: "
                + "; ".join(labels) + "."] if labels else []

    def flaw_mse_collapse(self) -> list[str]:
        items = []
        for e in self.of("addition", "reference"):
            run = e.first()
            if run is None:
                continue
            rows = reference_rows(run.summary)
            if not rows:
                continue
            bits = [100 * r["bit_accuracy"] for r in rows]
            whole = mean_percent(rows, "number_accuracy")
            items.append(f"{e.label}: mean bit accuracy {statistics.fmean(bits):.2f}% (per length "
                         f"{min(bits):.2f}..{max(bits):.2f}), whole-number accuracy {whole:.2f}%.")
        return items

    # Environment ---------------------------------------------------------------------------
    def environment(self) -> None:
        d = self.doc
        d.h(2, "Environment and wall time")
        envs: dict[tuple, int] = {}
        for e in self.experiments:
            for run in e.done:
                env = run.summary.get("environment", {})
                key = tuple(env.get(k, "?") for k in ("rnnlab", "torch", "python", "threads", "device", "platform"))
                envs[key] = envs.get(key, 0) + 1
        if envs:
            d.table(["rnnlab", "torch", "Python", "threads", "device", "platform", "runs"],
                    [[*map(str, key), str(n)] for key, n in envs.items()], right=[3, 6])
        rows, total_train, total_wall = [], 0.0, 0.0
        for e in self.experiments:
            for run in e.runs:
                s = run.summary
                train_s = s.get("train_seconds") if s else None
                wall_s = s.get("wall_seconds") if s else None
                total_train += train_s or 0.0
                total_wall += wall_s or 0.0
                epochs = s.get("epochs") if s else len(run.metrics)
                rows.append([f"{e.profile}/{e.task}/{e.name}", str(run.seed),
                             "finished" if s else (run.problem or MISSING), str(epochs),
                             seconds(train_s), seconds(wall_s)])
        d.p(f"Training time (sum over finished runs): {total_train:.0f} s; wall time of the runs "
            f"(training and testing; figures excluded): {total_wall:.0f} s.")
        d.table(["run", "seed", "status", "epochs", "train s", "wall s"], rows, right=[1, 3, 4, 5])

    def settings(self) -> None:
        d = self.doc
        d.h(2, "Settings of every experiment")
        rows = []
        for e in self.experiments:
            m, t = e.info.get("model", {}), e.info.get("train", {})
            model = (("Bi" if m.get("bidirectional") else "") + str(m.get("cell", "?")).upper() +
                     f" h{m.get('hidden_size', '?')}" + (f" {m.get('readout')}" if m.get("readout", "h_n") != "h_n" else ""))
            train = (f"{t.get('epochs')} ep, batch {t.get('batch_size')}, lr {t.get('lr')}, {t.get('schedule')}"
                     + (f", clip {t['clip']}" if t.get("clip") else ""))
            rows.append([f"{e.profile}/{e.task}/{e.name}", e.info.get("role", "main"), model, train,
                         ", ".join(map(str, e.info.get("seeds", []))), e.info.get("note", "")])
        d.table(["experiment", "role", "model", "training", "seeds", "note"], rows)


def build_report(out_dir: str | Path, data_dir: str | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    manifest = load_manifest(out)
    report = Report(out, manifest, load_experiments(out, manifest), data_dir)
    doc = report.build()
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(doc, out))
    atomic_write_text(html_path, render_html(doc, "rnnlab reproduction report"))
    return md_path, html_path
