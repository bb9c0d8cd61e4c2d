"""The three tasks and the commands that dispatch to them.

Each task module (``mnist``, ``recall``, ``addition``) provides:

- ``add_train_parser(train_subparsers)``: its ``rnnlab train TASK`` parser (sets ``func``);
- ``evaluate_run(record, args) -> dict``: test metrics recomputed from the best checkpoint;
- ``predict_run(record, inputs, args) -> int``: ``rnnlab predict RUN INPUT...``;
- ``train_plan(plan, *, data_dir, figures, on_epoch) -> dict``: train one run, return its summary;
- ``draw_figures(record, data_dir=None) -> list[Path]``: figures drawn from the run record only
  (``data_dir``: where MNIST's test images are; the other tasks ignore it).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from types import ModuleType

from rnnlab.core.errors import UserError
from rnnlab.core.records import RunRecord

TASK_MODULES = {"mnist": "rnnlab.tasks.mnist", "recall": "rnnlab.tasks.recall",
                "addition": "rnnlab.tasks.addition"}


def task_module(name: str) -> ModuleType:
    if name not in TASK_MODULES:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name])


def draw_run_figures(task: str, run_dir: str | Path, data_dir: str | None = None) -> list[Path]:
    """A finished run's figures, then the mark that they are complete (``figures/.drawn``)."""
    draw = task_module(task).draw_figures
    return RunRecord.open(run_dir).draw_figures(lambda record: draw(record, data_dir))


def task_of(record: RunRecord) -> ModuleType:
    return task_module(record.config().get("task", "?"))


def add_parsers(commands) -> None:
    """Register ``train``, ``evaluate`` and ``predict`` on the top-level subparsers."""
    from rnnlab.cli import HelpFormatter, new_subparsers

    train = commands.add_parser("train", help="train a model on a task", formatter_class=HelpFormatter,
                                description="Train a recurrent model; each run leaves a record in --out.")
    tasks = new_subparsers(train, "tasks", "task")
    for name in TASK_MODULES:
        task_module(name).add_train_parser(tasks)

    evaluate = commands.add_parser("evaluate", help="recompute a run's test metrics from its checkpoint",
                                   formatter_class=HelpFormatter)
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    evaluate.add_argument("--data-dir", default=None, help="MNIST data root (MNIST runs)")
    evaluate.add_argument("--dry-run", action="store_true", help="evaluate on a small slice only")
    evaluate.set_defaults(func=run_evaluate)

    predict = commands.add_parser(
        "predict", help="predict with a trained run", formatter_class=HelpFormatter,
        description="MNIST runs: image files or folders. Recall runs: the digits of one sequence "
        "(rnnlab predict RUN 3 1 4 1 5). Addition runs: two binary numbers, most significant "
        "bit first (rnnlab predict RUN 1011 0110).")
    predict.add_argument("run", help="run folder")
    predict.add_argument("inputs", nargs="+", help="what to predict (depends on the run's task)")
    predict.add_argument("--top", type=int, default=1, help="show the K most likely classes")
    predict.add_argument("--json", action="store_true", help="one JSON object per input")
    predict.add_argument("--show-input", default=None, metavar="OUT.png",
                         help="save the 28x28 input the model saw (image runs)")
    predict.add_argument("--max-length", type=int, default=10_000,
                         help="longest input sequence accepted")
    predict.add_argument("--batch-size", type=int, default=256, help="images per batch")
    predict.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--seed", type=int, default=0, help="unused by prediction; kept for symmetry")
    predict.add_argument("--dry-run", action="store_true", help="check inputs and the run, predict nothing")
    predict.set_defaults(func=run_predict)


def run_evaluate(args: argparse.Namespace) -> int:
    from rnnlab.core.train import configure_threads

    configure_threads(args.threads)
    record = RunRecord.open(args.run)
    metrics = task_of(record).evaluate_run(record, args)
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        print(f"{record.dir}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in metrics.items() if not isinstance(v, dict | list)))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from rnnlab.core.train import configure_threads

    configure_threads(args.threads)
    record = RunRecord.open(args.run)
    return task_of(record).predict_run(record, args.inputs, args)
