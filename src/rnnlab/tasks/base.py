"""The Task interface: everything one problem owns, so that generic code (train,
evaluate, predict, reproduce, report, the command line and the API) loops over a
registry and never names a task.

A task is a small class. Its class attributes say what it is (name, config
dataclass, model kind, default model and training settings); its methods make its
data, test a model, read inputs for prediction, draw its figures, list its
experiments for ``rnnlab reproduce`` and write its section of the report. A new
task is one module with one :class:`Task` subclass plus one registry line (or a
call of :func:`rnnlab.register_task` from outside the package).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol

from torch import nn

from rnnlab.core.document import Document
from rnnlab.core.errors import ConfigError, InputError
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, TaskData
from rnnlab.core.train import TrainConfig

REFERENCE_SEED = 2111  # the exercise's seed: the first seed of every experiment
QUICK_EPOCHS = 2  # ``reproduce --quick``: two points on every curve, seconds per run


# -- what a task hands back ----------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """One prediction: what the model says about one input."""

    label: Any  # the predicted class (an int), or the computed value (the sum, for addition)
    text: str  # what ``rnnlab predict`` prints for it (one or more lines)
    probabilities: tuple[float, ...] | None = None  # per class, where there are classes
    record: dict = field(default_factory=dict)  # what ``rnnlab predict --json`` prints
    source: str | None = None  # the input's name (an image file), where it has one


@dataclass(frozen=True)
class PredictOptions:
    """How to predict; the command line's ``predict`` options."""

    top: int = 1  # the K most likely classes in ``text`` and ``record``
    max_length: int = 10_000  # the longest input sequence accepted
    batch_size: int = 256  # inputs per forward pass (image folders)
    show_input: str | None = None  # image tasks: save the input the model saw (a path pattern)
    dry_run: bool = False  # read and check every input, predict nothing
    progress: Callable[[int], None] | None = None  # called with 1 as each input is read


class EpochHook(Protocol):
    """Work a task does after each epoch (``on_epoch``) and on resume (``catch_up``)."""

    def __call__(self, row: dict) -> None: ...

    def catch_up(self, record: RunRecord) -> None: ...


# -- what a task offers ``rnnlab reproduce`` and the report -------------------------
@dataclass(frozen=True)
class Experiment:
    """One configuration of a task, trained once per seed by ``rnnlab reproduce``."""

    task: str
    name: str  # short id within the task and profile, e.g. "bilstm", "hidden-10", "h5-bce"
    label: str  # how tables and legends name it
    profile: str  # "reference" (the exercise's settings, flaws fixed) | "tuned" (rnnlab's best)
    model_kind: str
    model: ModelConfig
    train: TrainConfig
    task_config: dict
    reference: float | None = None  # the exercise's reported number, percent
    note: str = ""  # what differs from the reference and why
    seeds: tuple[int, ...] = (REFERENCE_SEED,)
    role: str = "main"  # "main": a row of the task's table; "ablation": a flaw put back
    baseline: str | None = None  # ablations: the main experiment it is compared with
    flaw: str | None = None  # ablations: the id of the flaw it measures
    reference_curve: tuple[float, ...] | None = None  # the reference's validation curve, percent
    target: float | None = None  # tuned: the accuracy asked for, percent

    def __post_init__(self) -> None:
        # reproduce's numbers are compared across machines and with the exercise's: fp32
        # on every machine, where precision auto would train bf16 on some CPUs only
        if self.train.precision == "auto":
            object.__setattr__(self, "train", replace(self.train, precision="fp32"))

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
        """This experiment's entry in ``reproduce.json``."""
        return {"id": self.id, "task": self.task, "name": self.name, "label": self.label,
                "profile": self.profile, "role": self.role, "baseline": self.baseline,
                "flaw": self.flaw, "reference": self.reference,
                "reference_curve": self.reference_curve, "target": self.target, "note": self.note,
                "model": self.model.to_dict(), "train": self.train.to_dict(),
                "task_config": self.task_config, "seeds": list(self.seeds),
                "runs": [str(self.run_dir(out, s).relative_to(out)) for s in self.seeds]}


class ReportContext(Protocol):
    """What a task's report section and its flaws' explanations can ask of the report
    being written (``rnnlab.study.report.Report`` implements it; see there).

    Experiments come back as the report's results table: ``exp.name``, ``.label``,
    ``.profile``, ``.role``, ``.reference``, ``.reference_curve``, ``.target``, ``.note``,
    ``.quick``, ``.task_config``, ``.model``, ``.train``, ``.runs`` (every seed), ``.done``
    (the finished ones), ``.values()`` (their headline numbers) and ``.first()`` (the first
    finished run or None). A run has ``.seed``, ``.path``, ``.record``, ``.config``,
    ``.metrics`` (metrics.jsonl rows), ``.summary`` (None: not finished), ``.value`` (the
    headline number) and ``.curve(key, scale)`` ((epochs, values) of a metrics column).
    Numbers are written with the functions of ``rnnlab.core.document`` (``pct``, ...).
    """

    doc: Document  # headings, paragraphs, bullets, tables, figures
    data_dir: str | None  # the data root, for figures that need a data set
    not_measured: str  # the sentence for an ablation that is not part of the reproduction

    def experiments(self, task: str, profile: str | None = None,
                    role: str | None = "main") -> list[Any]:
        """The task's experiments in manifest order; None matches any profile or role."""

    def find(self, profile: str, task: str, name: str) -> Any:
        """The experiment of that id, or None."""

    def value(self, exp: Any) -> float | None:
        """The headline number of the experiment's first finished run (None: none)."""

    def finished(self, task: str, profile: str = "reference") -> list[Any]:
        """The task's main experiments of ``profile`` with a finished run."""

    def ablation_pairs(self, flaw: str) -> list[tuple[Any, Any]]:
        """(ablation, the fixed experiment it is compared with, or None) for each ablation
        that puts ``flaw`` back."""

    def ablation_items(self, flaw: str) -> list[str]:
        """The generic explanation: each fixed run against its ablation, as list items."""

    def figure(self, name: str, draw: Callable[[Path], Path | None], caption: str) -> None:
        """Draw ``figures/<name>`` with ``draw(path)`` and add it with ``caption``."""

    def comparison_table(self, task: str, first_column: str) -> None:
        """The task's table: reference, reference settings, tuned, differences, target."""

    def below_reference(self, experiments: Sequence[Any],
                        reason: Callable[[Any], str] | None = None) -> None:
        """Where a reference-settings number is below the reference, and why (``reason``,
        or else the test set's sampling noise)."""

    def default_section(self, task: str) -> None:
        """The generic section: comparison table and validation curves of the task."""


@dataclass(frozen=True)
class Flaw:
    """A flaw of the exercise's code, the fix rnnlab applies, and how the records
    measure it: ``ablation`` names the (first) experiment that puts the flaw back, each
    such experiment carrying ``flaw=id``; ``explain(report)`` writes what the records
    show, as list items. Without ``explain`` the report compares each ablation with the
    fixed run it puts the flaw back into."""

    id: str
    task: str
    flaw: str
    fix: str
    explain: Callable[[ReportContext], list[str]] | None = None
    ablation: str | None = None

    def describe(self) -> dict:
        """The flaw's entry in ``reproduce.json``."""
        return {"id": self.id, "task": self.task, "flaw": self.flaw, "fix": self.fix,
                "ablation": self.ablation}


# -- the interface -------------------------------------------------------------------
class Task(ABC):
    """One sequence problem. Subclasses set the class attributes and implement the
    abstract methods; ``self.config`` is an instance of ``Config``."""

    name: ClassVar[str]  # the registry key and the ``rnnlab train NAME`` subcommand
    title: ClassVar[str]  # one line, for ``--help`` and the report
    # a frozen dataclass; its fields made with ``core.settings.setting`` are user options
    Config: ClassVar[type]
    model_kind: ClassVar[str] = "classifier"  # "classifier" (one label) | "per_step" (one per step)
    model_defaults: ClassVar[ModelConfig]  # the default model settings (input/output sizes ignored)
    train_defaults: ClassVar[TrainConfig]
    # Several hidden sizes at once on the command line, one run each in OUT/hidden-H
    # (the exercise compares them); None: one run in OUT.
    hidden_sweep: ClassVar[tuple[int, ...] | None] = None
    uses_data_dir: ClassVar[bool] = False  # reads a data set from the data root
    input_help: ClassVar[str] = "what to predict"  # the inputs of ``rnnlab predict RUN INPUT...``
    train_epilog: ClassVar[str] = ""  # examples shown under ``rnnlab train NAME --help``
    flaws: ClassVar[tuple[Flaw, ...]] = ()
    # the explorer's input widget (``rnnlab serve``): "image" (a drawn 28x28 digit read row
    # by row), "digits" (a typed digit sequence), "bits" (two numbers added bit by bit);
    # None: the explorer lists the task's runs but does not inspect them
    input_kind: ClassVar[str | None] = None
    # The task's study module, if any: ``experiments(profile, seeds, ablations)`` and
    # ``report_section(report)`` for ``rnnlab reproduce``, and ``draw_run_figures(record)``
    # where a run's figures need only its record (the defaults below call them).
    study: ClassVar[ModuleType | None] = None

    def __init__(self, config: Any = None):
        self.config = self.Config() if config is None else config
        assert isinstance(self.config, self.Config), \
            f"{self.name} takes a {self.Config.__name__}, got {type(self.config).__name__}"

    @classmethod
    def from_dict(cls, values: dict) -> Task:
        """The task of a stored ``task_config`` (a config.json's); unknown keys are refused."""
        known = {f.name for f in fields(cls.Config)}
        extra = sorted(set(values) - known)
        if extra:
            raise ConfigError("task_config",
                              f"has settings {cls.name} does not know: {', '.join(extra)}")
        return cls(cls.Config(**values))

    def config_dict(self) -> dict:
        return asdict(self.config)

    # -- the model -------------------------------------------------------------------
    @abstractmethod
    def model_shape(self) -> tuple[int, int]:
        """(input features per step, model outputs) for this config."""

    # -- data, training and testing --------------------------------------------------
    @abstractmethod
    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> Any:
        """The run's fixed sets (validation, test, and with ``training`` a fixed training
        set where there is one), built once per run; whatever the other methods need."""

    @abstractmethod
    def training_data(self, sets: Any, train: TrainConfig) -> TaskData:
        """Training batches (a fresh order every epoch), validation batches, the objective."""

    @abstractmethod
    def test(self, model: nn.Module, sets: Any, batch_size: int, record: RunRecord) -> dict:
        """The summary's ``test`` dict; may write per-run files (predictions, examples)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, sets: Any, batch_size: int) -> dict:
        """Test metrics recomputed from a model, writing nothing (``rnnlab evaluate``)."""

    def epoch_hook(self, run_dir: Path, sets: Any, batch_size: int,
                   then: Callable[[dict], None] | None) -> EpochHook | None:
        """Per-epoch work beyond training and validation (None: none); calls ``then``."""
        return None

    @abstractmethod
    def shrunk(self, batch_size: int) -> Task:
        """This task on a few batches of data, for ``--dry-run`` and ``reproduce --quick``."""

    # -- prediction ------------------------------------------------------------------
    @abstractmethod
    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        """Predictions for ``inputs`` in order: command-line strings (and file paths) or
        native values (digits, ints, arrays, images). A bad input yields an InputError in
        its place, so the others are still predicted."""

    def check_model(self, run: RunRecord, payload: dict) -> None:  # noqa: B027 - optional hook
        """Refuse a checkpoint this task cannot predict with (an InputError); default: any."""

    # -- what the command line prints -------------------------------------------------
    def epoch_line(self, row: dict) -> str:
        """One epoch's progress line (``row``: fit's metrics plus seconds and epochs)."""
        return (f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f} "
                f"acc {100 * row['train_accuracy']:.2f}% | valid loss {row['valid_loss']:.4f} "
                f"acc {100 * row['valid_accuracy']:.2f}% | {row['seconds']:.1f}s")

    def summary_line(self, out: Path, summary: dict) -> str:
        """The line that ends a run: what it scored."""
        test = summary["test"]
        return (f"{out}: test accuracy {100 * test['accuracy']:.2f}% (loss {test['loss']:.4f}), "
                f"best epoch {summary['best_epoch']}, {summary['train_seconds']:.1f}s training")

    # -- figures ---------------------------------------------------------------------
    def draw_figures(self, record: RunRecord, data_dir: str | None) -> list[Path]:
        """One finished run's figures, drawn from its record only (default: the study
        module's ``draw_run_figures(record)``, none without one)."""
        draw = getattr(self.study, "draw_run_figures", None)
        return draw(record) if draw is not None else []

    def draw_comparison(self, records: Sequence[RunRecord], out_dir: Path) -> list[Path]:
        """Figures comparing several runs of one command (a hidden sweep); default none."""
        return []

    # -- the reproduction and the report ---------------------------------------------
    @classmethod
    def experiments(cls, profile: str, seeds: tuple[int, ...], ablations: bool) -> list[Experiment]:
        """The task's experiments of ``profile`` (its study module's; none without one)."""
        return cls.study.experiments(profile, seeds, ablations) if cls.study is not None else []

    @classmethod
    def headline(cls, summary: dict) -> tuple[str, float]:
        """(name, value in percent) of the number the task's tables compare."""
        return "test accuracy", 100 * summary["test"]["accuracy"]

    @classmethod
    def report_section(cls, report: ReportContext) -> None:
        """Write the task's section of the report: its study module's, or without one the
        report's generic section (a table of its experiments and their validation curves)."""
        if cls.study is not None:
            cls.study.report_section(report)
        else:
            report.default_section(cls.name)

    # The progress estimate of ``reproduce`` scales recorded epoch times by the work of an
    # epoch: the sequences it reads times their mean length (default: unknown, one unit).
    def examples_per_epoch(self) -> int:
        """Training sequences one epoch reads."""
        return 1

    def mean_steps(self) -> float:
        """Their mean length in time steps."""
        return 1.0
