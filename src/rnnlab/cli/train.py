"""``rnnlab train TASK``, ``rnnlab evaluate RUN`` and ``rnnlab predict RUN INPUT...``:
one generic command each, with a ``train`` subcommand per registered task whose
options are generated from the task's settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from rnnlab.cli.parsing import (
    HelpFormatter,
    add_settings,
    cli_message,
    new_subparsers,
    values_of,
)
from rnnlab.core.errors import InputError
from rnnlab.core.records import RunRecord
from rnnlab.core.threads import configure_threads
from rnnlab.tasks.base import PredictOptions, Task
from rnnlab.tasks.registry import REGISTRY
from rnnlab.tasks.workflow import (
    RunOptions,
    evaluate_run,
    make_plans,
    predict_run,
    train_run,
    train_settings,
)


def add_parsers(commands) -> None:
    """Register ``train`` (one subcommand per task), ``evaluate`` and ``predict``."""
    train = commands.add_parser("train", help="train a model on a task",
                                formatter_class=HelpFormatter,
                                description="Train a recurrent model; each run leaves a record "
                                "in --out.")
    tasks = new_subparsers(train, "tasks", "task")
    for name in REGISTRY.names():
        add_task_parser(tasks, REGISTRY.get(name))
    add_evaluate_parser(commands)
    add_predict_parser(commands)


def add_task_parser(tasks, task: type[Task]) -> None:
    p = tasks.add_parser(task.name, help=task.title, formatter_class=HelpFormatter,
                         description=sys.modules[task.__module__].__doc__ or task.title,
                         epilog=task.train_epilog or None)
    sweep = ("hidden",) if task.hidden_sweep else ()
    for title, settings in train_settings(task).items():
        add_settings(p, title, settings, many=sweep)
    if task.hidden_sweep:
        p.set_defaults(hidden=list(task.hidden_sweep))
    p.set_defaults(out=f"runs/{task.name}", func=run_train, task_class=task)


def run_train(args: argparse.Namespace) -> int:
    task: type[Task] = args.task_class
    groups = train_settings(task)
    options = RunOptions(**values_of(args, groups.pop("output and runtime")))
    configure_threads(options.threads)
    values = {k: v for group in groups.values() for k, v in values_of(args, group).items()}
    plans = make_plans(task, values, options, sweep_folders=bool(task.hidden_sweep))
    summaries = []
    for plan in plans:
        instance = task.from_dict(plan.task_config)
        prefix = f"hidden {plan.model.hidden_size} " if task.hidden_sweep else ""
        on_epoch = None if options.quiet else (
            lambda row, t=instance, p=prefix: print(p + t.epoch_line(row), flush=True))
        summary = train_run(plan, data_dir=options.data_dir, figures=not options.no_figures,
                            on_epoch=on_epoch)
        print(instance.summary_line(plan.out, summary), flush=True)
        summaries.append((plan, summary))
    if task.hidden_sweep and not options.no_figures:
        records = [RunRecord.open(p.out) for p in plans]
        task.from_dict(plans[0].task_config).draw_comparison(records, Path(options.out) / "figures")
    if len(summaries) > 1:
        print(sweep_table(summaries))
    return 0


def sweep_table(results: list) -> str:
    lines = ["| hidden | parameters | test accuracy | wall s |", "|---:|---:|---:|---:|"]
    for plan, s in results:
        lines.append(f"| {plan.model.hidden_size} | {s['parameters']} | "
                     f"{100 * s['test']['accuracy']:.2f}% | {s['wall_seconds']:.1f} |")
    return "\n".join(lines)


# -- evaluate ---------------------------------------------------------------------------
def add_evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="recompute a run's test metrics from its checkpoint",
                            formatter_class=HelpFormatter)
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data-dir", default=None, help="data root (tasks that read a data set)")
    p.add_argument("--dry-run", action="store_true", help="evaluate on a small slice only")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    metrics = evaluate_run(args.run, data_dir=args.data_dir, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    shown = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
             for k, v in metrics.items() if not isinstance(v, dict | list)]
    print(f"{args.run}: " + ", ".join(shown))
    return 0


# -- predict ----------------------------------------------------------------------------
def add_predict_parser(commands) -> None:
    inputs = "; ".join(f"{t}: {REGISTRY.get(t).input_help}" for t in REGISTRY.names())
    p = commands.add_parser(
        "predict", help="predict with a trained run", formatter_class=HelpFormatter,
        description=f"What INPUT is depends on the run's task. {inputs}. Examples: rnnlab "
        "predict RUN digit.png; rnnlab predict RUN 3 1 4 1 5; rnnlab predict RUN 1011 0110.")
    p.add_argument("run", help="run folder")
    p.add_argument("inputs", nargs="+", help="what to predict (depends on the run's task)")
    p.add_argument("--top", type=int, default=1, help="show the K most likely classes")
    p.add_argument("--json", action="store_true", help="one JSON object per input")
    p.add_argument("--show-input", default=None, metavar="OUT.png",
                   help="save the 28x28 input the model saw (image runs)")
    p.add_argument("--max-length", type=int, default=10_000, help="longest input sequence accepted")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0, help="unused by prediction; kept for symmetry")
    p.add_argument("--dry-run", action="store_true",
                   help="check inputs and the run, predict nothing")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """One line (or one JSON object) per prediction on stdout, one line per bad input on
    stderr; exit code 2 if any input failed."""
    configure_threads(args.threads)
    with tqdm(desc="predict", unit="input", leave=False, file=sys.stderr, dynamic_ncols=True,
              disable=args.quiet or not sys.stderr.isatty()) as bar:
        options = PredictOptions(top=args.top, max_length=args.max_length,
                                 batch_size=args.batch_size, show_input=args.show_input,
                                 dry_run=args.dry_run, progress=bar.update)
        failed, readable = 0, 0
        for result in predict_run(args.run, args.inputs, options):
            if isinstance(result, InputError):
                failed += 1
                tqdm.write(f"rnnlab: error: {cli_message(result)}", file=sys.stderr)
            elif args.dry_run:
                readable += 1
            else:
                tqdm.write(json.dumps(result.record) if args.json else result.text, file=sys.stdout)
    if args.dry_run:
        print(f"dry run: {readable} of {readable + failed} input(s) readable by the run in "
              f"{args.run}; nothing predicted")
    return 2 if failed else 0
