"""The delay grid of the ``long-range`` profile: every registered cell on a long-memory task
at each delay T in :data:`DELAYS`, all on one CPU budget, and the report's table and figures
of which cells solve which delays, with the gradient reaching back through T steps.

A long-memory task (adding-problem, copy-memory) describes its grid once (a
:class:`DelayGrid`); the experiments and the report section come from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from rnnlab.core import plots
from rnnlab.core.cells import cell_names
from rnnlab.core.document import MISSING
from rnnlab.core.models import ModelConfig
from rnnlab.core.train import StopRule, TrainConfig
from rnnlab.tasks.base import Experiment, ReportContext

PROFILE = "long-range"
RECIPES = "long-range-recipes"  # the profile of each task's full-budget runs at one delay
RECIPE_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "plain RNN"}
DELAYS = (50, 100, 200, 500, 1000)
GRADIENT_DELAY = 200  # the delay whose gradient curves the report draws


@dataclass(frozen=True)
class FullBudget:
    """One long-memory task's full-budget recipe (profile ``long-range-recipes``): LSTM, GRU
    and the plain RNN at one delay, each on the same budget."""

    task: str
    model_kind: str
    model: ModelConfig  # the task's shape; the cell is replaced by each of RECIPE_CELLS
    train: TrainConfig
    task_config: dict
    note: str

    def experiments(self, seeds: tuple[int, ...]) -> list[Experiment]:
        return [Experiment(self.task, cell, f"{label} hidden {self.model.hidden_size}", RECIPES,
                           self.model_kind, replace(self.model, cell=cell),
                           replace(self.train, seed=seeds[0]), self.task_config, None,
                           self.note, seeds[:1])
                for cell, label in RECIPE_CELLS.items()]


def steps_trained(run) -> int:
    """The training steps a finished run of a long-memory task took (fewer than its budget
    where it stopped once solved)."""
    config = run.config
    return run.summary["epochs"] * config["task_config"]["train_size"] \
        // config["train"]["batch_size"]


def budget_used(run) -> tuple[str, str]:
    """(steps, training minutes) of a finished run, as the full-budget tables show them."""
    return f"{steps_trained(run):,}", f"{run.summary['train_seconds'] / 60:.1f}"


def long_range_experiments(profile: str, seeds: tuple[int, ...], grid: DelayGrid,
                           recipe: FullBudget) -> list[Experiment]:
    """A long-memory task's experiments: the delay grid (``long-range``), its full-budget
    recipe (``long-range-recipes``), none otherwise; both run only by name (minutes to hours
    on a CPU)."""
    if profile == PROFILE:
        return grid.experiments(seeds)
    if profile == RECIPES:
        return recipe.experiments(seeds)
    return []


@dataclass(frozen=True)
class DelayGrid:
    task: str
    model_kind: str
    model: ModelConfig  # the task's shape; the cell is replaced by each registered cell
    train: TrainConfig  # the budget, the same for every cell and delay
    task_config: Callable[[int], dict]  # delay T -> the task's config
    metric: str  # the key of summary["test"] the table shows, e.g. "mse"
    metric_label: str  # how the table names it
    solved: Callable[[float], bool]  # the metric's value -> solved?
    solved_rule: str  # "MSE < 0.01"
    baseline: Callable[[dict], float]  # summary["test"] -> the memoryless baseline's value
    # a second table, when the metric alone hides how near the baseline a cell is: (key of
    # summary["test"], its label, key of the memoryless baseline's value there)
    loss_table: tuple[str, str, str] | None = None

    def budget(self, train: dict | None = None, task_config: dict | None = None) -> str:
        """The budget of every run, in words: the grid's, or that of runs' ``train`` and
        ``task_config`` as recorded (a --quick run has a smaller one)."""
        train = train or asdict(self.train)
        sequences = train["epochs"] * (task_config or self.task_config(DELAYS[0]))["train_size"]
        stop = StopRule.parse(train["stop_when"]) if train.get("stop_when") else None
        return (f"up to {sequences // train['batch_size']:,} steps of {train['batch_size']} "
                f"fresh sequences, Adam lr {train['lr']}, clip {train['clip']}, hidden "
                f"{self.model.hidden_size}" + (
                    f"; stopped after the first epoch with {stop.text()}" if stop else ""))

    def experiment(self, cell: str, delay: int, seed: int) -> Experiment:
        note = f"delay T = {delay}; {self.budget()}: the same budget for every cell and delay"
        return Experiment(self.task, f"{cell}-T{delay}", f"{cell.upper()} T={delay}", PROFILE,
                          self.model_kind, replace(self.model, cell=cell),
                          replace(self.train, seed=seed), self.task_config(delay), None, note,
                          (seed,))

    def experiments(self, seeds: tuple[int, ...]) -> list[Experiment]:
        """Every registered cell at every delay (first seed: one run each)."""
        return [self.experiment(cell, delay, seeds[0]) for cell in cell_names() for delay in DELAYS]

    def run(self, report: ReportContext, cell: str, delay: int):
        """The finished run of ``cell`` at ``delay``, or None."""
        found = report.find(PROFILE, self.task, f"{cell}-T{delay}")
        return found.first() if found else None

    def value(self, run) -> float | None:
        """A finished run's test metric; None for no run."""
        return None if run is None else run.summary["test"][self.metric]

    def report_section(self, report: ReportContext, title: str) -> None:
        """The table of which cells solve which delays, the metric against T, and the
        gradient by step at T = GRADIENT_DELAY for each cell."""
        found = report.experiments(self.task, PROFILE)
        if not found:
            return
        cells = list(dict.fromkeys(e.model.get("cell", "?") for e in found))
        runs = {(cell, t): self.run(report, cell, t) for cell in cells for t in DELAYS}
        report.doc.heading(2, f"{title}: which cells remember across which delays")
        report.doc.paragraph(
            f"Each cell trained once per delay T on the same budget "
            f"({self.budget(found[0].train, found[0].task_config)}). "
            f"Test {self.metric_label}; a check mark where solved ({self.solved_rule}), "
            "with the training steps it took; a dash where the run has not finished.")
        report.doc.table(["cell", *[f"T = {t}" for t in DELAYS]],
                         [[cell.upper(), *[self.cell_text(runs[cell, t]) for t in DELAYS]]
                          for cell in cells], right=range(1, len(DELAYS) + 1))
        baselines = [self.baseline(e.first().summary["test"]) for e in found if e.first()]
        if baselines:
            low, high = min(baselines), max(baselines)
            span = f"{low:.4f}" if high - low < 5e-5 else f"{low:.4f} to {high:.4f} over these T"
            report.doc.paragraph(f"The memoryless baseline's {self.metric_label}: {span}.")
        if self.loss_table is not None:
            self.loss_section(report, cells, runs)
        self.figures(report, cells, runs, title)

    def loss_section(self, report: ReportContext, cells: list[str], runs: dict) -> None:
        """Each run's test loss against the memoryless baseline's, by delay (``runs``: the
        finished run of each (cell, T), or None)."""
        key, label, baseline_key = self.loss_table

        def text(run, name: str) -> str:
            return MISSING if run is None else f"{run.summary['test'][name]:.4f}"

        # the baseline depends on T only: any cell's run at T has it
        baseline = [text(next((runs[c, t] for c in cells if runs[c, t]), None), baseline_key)
                    for t in DELAYS]
        report.doc.paragraph(f"Test {label} of the same runs; the last row is the memoryless "
                             "baseline's, which a cell below it has beaten.")
        report.doc.table(["cell", *[f"T = {t}" for t in DELAYS]],
                         [[cell.upper(), *[text(runs[cell, t], key) for t in DELAYS]]
                          for cell in cells]
                         + [["baseline", *baseline]], right=range(1, len(DELAYS) + 1))

    def cell_text(self, run) -> str:
        """A run's test metric; where solved, a check mark and the steps it took (a run
        stops once its validation set is solved); a dash for no run."""
        value = self.value(run)
        if value is None:
            return MISSING
        if not self.solved(value):
            return f"{value:.4f}"
        return f"{value:.4f} ✓ ({steps_trained(run):,} steps)"

    def figures(self, report: ReportContext, cells: list[str], runs: dict, title: str) -> None:
        lines = []
        for cell in cells:
            points = [(t, v) for t in DELAYS if (v := self.value(runs[cell, t])) is not None]
            if points:
                lines.append((cell.upper(), [t for t, _ in points], [v for _, v in points]))
        report.figure(f"{self.task}_by_delay.png", lambda path: plots.draw_lines(
            lines, path, xlabel="delay T", ylabel=f"test {self.metric_label}", log_x=True,
            title=f"{title}: test {self.metric_label} by delay ({self.solved_rule} is solved)")
            if lines else None, f"Test {self.metric_label} of each cell against the delay T.")
        at_gradient_delay = [(cell.upper(), run.record) for cell in cells
                             if (run := self.run(report, cell, GRADIENT_DELAY)) is not None]
        report.figure(f"{self.task}_gradients.png", lambda path: plots.draw_gradient_norms(
            at_gradient_delay, path,
            f"{title}, T = {GRADIENT_DELAY}: how far back the loss reaches"),
            f"The norm of dLoss/dh_t against the step t at T = {GRADIENT_DELAY} (log scale), "
            "at initialisation and after training, one line per cell: where a line falls to "
            "the left, the gradient from the answer no longer reaches the early steps.")
