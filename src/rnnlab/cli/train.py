"""``rnnlab train TASK``, ``rnnlab evaluate RUN`` and ``rnnlab predict RUN INPUT...``:
one generic command each, with a ``train`` subcommand per registered task whose
options are generated from the task's settings."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from rnnlab.cli.parsing import (
    HelpFormatter,
    add_settings,
    cli_message,
    new_subparsers,
    values_of,
)
from rnnlab.core.devices import make_deterministic, resolve_device
from rnnlab.core.distributed import (
    Ranks,
    ranks_from_env,
    start,
    stop,
    threads_per_rank,
)
from rnnlab.core.errors import InputError, RankError, check
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan
from rnnlab.core.settings import settings_of
from rnnlab.core.threads import configure_threads, usable_cores
from rnnlab.study.jobs import sigterm_as_interrupt
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
    p.add_argument_group("distributed").add_argument(
        "--nproc", type=int, default=None, metavar="N",
        help="train on N ranks of this machine with torchrun (data parallel; gloo on the CPU); "
        "for several machines run `torchrun ... -m rnnlab train ...` (docs/distributed.md)")
    p.set_defaults(out=f"runs/{task.name}", func=run_train, task_class=task)


def run_train(args: argparse.Namespace) -> int:
    if args.nproc is not None:
        return launch_ranks(args.nproc, args.argv)
    task: type[Task] = args.task_class
    groups = train_settings(task)
    options = RunOptions(**values_of(args, groups.pop("output and runtime")))
    ranks = ranks_from_env()
    device = rank_device(resolve_device(options.device), ranks)
    if options.deterministic:
        make_deterministic()
    start(ranks, device)
    threads = options.threads
    if threads is None and ranks.active:
        threads = threads_per_rank(usable_cores(), ranks)
    configure_threads(threads)
    values = {k: v for group in groups.values() for k, v in values_of(args, group).items()}
    plans = make_plans(task, values, options, sweep_folders=bool(task.hidden_sweep))
    with sigterm_as_interrupt(), rank_loss_as_error(ranks):
        summaries = [(plan, train_one(task, plan, options, ranks, device)) for plan in plans]
    if ranks.main and task.hidden_sweep and not options.no_figures:
        records = [RunRecord.open(p.out) for p in plans]
        task.from_dict(plans[0].task_config).draw_comparison(records, Path(options.out) / "figures")
    if ranks.main and len(summaries) > 1:
        print(sweep_table(summaries))
    stop(ranks)
    return 0


def train_one(task: type[Task], plan: RunPlan, options: RunOptions, ranks: Ranks,
              device: torch.device) -> dict:
    """Train one planned run, printing its epochs and its result (rank 0 only)."""
    instance = task.from_dict(plan.task_config)
    prefix = f"hidden {plan.model.hidden_size} " if task.hidden_sweep else ""
    on_epoch = None if options.quiet else (
        lambda row: print(prefix + instance.epoch_line(row), flush=True))
    summary = train_run(plan, data_dir=options.data_dir, figures=not options.no_figures,
                        on_epoch=on_epoch, ranks=ranks, device=device)
    if ranks.main:
        print(instance.summary_line(plan.out, summary), flush=True)
    return summary


@contextlib.contextmanager
def rank_loss_as_error(ranks: Ranks) -> Iterator[None]:
    """A rank that died breaks the collectives of the others: one line, not a traceback."""
    try:
        yield
    except RuntimeError as err:
        if not ranks.active:
            raise
        raise RankError(f"another rank of this run stopped ({type(err).__name__} in rank "
                        f"{ranks.rank}); finished epochs are kept: run the same command with "
                        "`resume` to continue") from None


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank of a CUDA run uses its own GPU: the one numbered by its local rank."""
    if ranks.active and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device``, as ``rnnlab train`` has it (from RunOptions' setting)."""
    device = next(s for s in settings_of(RunOptions) if s.name == "device")
    parser.add_argument(device.flag, default=device.default, help=device.help)


def launch_ranks(nproc: int, argv: list[str]) -> int:
    """``--nproc N``: the same command under torchrun's launcher on this machine, N ranks."""
    check(nproc >= 1, "nproc", f"must be >= 1, got {nproc}")
    rest = without_option(argv, "--nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), "-m", "rnnlab", *rest]
    return subprocess.call(command)


def without_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` or ``flag=VALUE``."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            kept.append(token)
    return kept


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
    add_device_option(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    metrics = evaluate_run(args.run, data_dir=args.data_dir, dry_run=args.dry_run,
                           device=args.device)
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
    add_device_option(p)
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
        for result in predict_run(args.run, args.inputs, options, device=args.device):
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
