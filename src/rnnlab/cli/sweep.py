"""``rnnlab sweep TASK``: a hyperparameter search on Optuna, each trial an ordinary run
folder; ``rnnlab sweep status``: its trials by state and the best one.

The search space is settings of the task with a spec each: ``--param lr=log:1e-4:1e-2``
(a log scale), ``--param dropout=float:0:0.5``, ``--param hidden=int:8:64``,
``--param cell=choice:lstm,gru``; ``--set NAME=VALUE`` fixes a setting for every trial.
A TOML file (``--space``) may hold the same as ``[params]`` and ``[set]`` tables.
The same command run elsewhere against the same storage and study adds workers to it.
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnlab.cli.parsing import HelpFormatter, new_subparsers
from rnnlab.study.sweep import (
    METRICS,
    PRUNERS,
    SweepOptions,
    SweepStatus,
    TrialRow,
    check_sweep,
    fixed_settings,
    read_space_file,
    run_sweep,
    search_space,
    split_assignment,
    sweep_status,
)
from rnnlab.study.sweep_report import build_sweep_report
from rnnlab.tasks.base import Task
from rnnlab.tasks.registry import REGISTRY


def add_parser(commands) -> None:
    """Register ``sweep TASK`` (one subcommand per task) and ``sweep status``."""
    sweep = commands.add_parser("sweep", help="search hyperparameters with Optuna",
                                formatter_class=HelpFormatter, description=__doc__)
    commands_of_sweep = new_subparsers(sweep, "tasks, and the status of a sweep", "sweep_of")
    for name in REGISTRY.names():
        add_task_parser(commands_of_sweep, REGISTRY.get(name))
    add_status_parser(commands_of_sweep)


def add_task_parser(commands, task: type[Task]) -> None:
    p = commands.add_parser(task.name, help=f"search the settings of {task.name}: {task.title}",
                            formatter_class=HelpFormatter, description=__doc__)
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, default=20,
                   help="complete or pruned trials the study should hold")
    g.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                   help="a setting to search: log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH or "
                   "choice:A,B,C (repeat for each)")
    g.add_argument("--space", default=None, metavar="FILE",
                   help="a TOML file with [params] NAME = \"SPEC\" and [set] NAME = VALUE")
    g.add_argument("--set", action="append", default=None, metavar="NAME=VALUE", dest="fixed",
                   help="a setting every trial uses (repeat for each)")
    g.add_argument("--metric", choices=METRICS, default="valid_accuracy",
                   help="what the search optimises (accuracy up, loss down)")
    g.add_argument("--pruner", choices=PRUNERS, default="median",
                   help="stops trials whose validation metric lags, epoch by epoch")
    g.add_argument("--seed", type=int, default=None,
                   help="the sampler's seed (worker i uses SEED+i); the training seed is "
                   "--set seed=N")
    g = p.add_argument_group("study and workers")
    g.add_argument("--study", default="sweep", help="the study's name in the storage")
    g.add_argument("--storage", default=None, metavar="URL",
                   help="postgresql://USER@HOST:PORT/DATABASE, or a journal file (default: "
                   "OUT/optuna-journal.log)")
    g.add_argument("--workers", type=int, default=1,
                   help="local worker processes, one thread each")
    g = p.add_argument_group("output and runtime")
    g.add_argument("--out", default=f"sweeps/{task.name}",
                   help="output folder: trials/trial-NNNN run folders, sweep.json, "
                   "report.md and report.html")
    g.add_argument("--no-figures", action="store_true", help="skip each trial's figures")
    g.add_argument("--quiet", action="store_true", help="no line per finished trial")
    g.add_argument("--dry-run", action="store_true",
                   help="check the space, the settings and the storage; train nothing")
    if task.uses_data_dir:
        g.add_argument("--data-dir", default=None, help="data root")
    p.set_defaults(func=run_sweep_command, task_class=task)


def sweep_options(args: argparse.Namespace) -> SweepOptions:
    task: type[Task] = args.task_class
    specs, texts = read_space_file(args.space) if args.space else ({}, {})
    specs.update(split_assignment(text, "param") for text in args.param or ())
    texts.update(split_assignment(text, "set") for text in args.fixed or ())
    return SweepOptions(
        task=task.name, params=search_space(task, specs), trials=args.trials,
        fixed=fixed_settings(task, texts), study=args.study, storage=args.storage,
        workers=args.workers, pruner=args.pruner, metric=args.metric, out=args.out,
        seed=args.seed, figures=not args.no_figures,
        data_dir=getattr(args, "data_dir", None))


def run_sweep_command(args: argparse.Namespace) -> int:
    options = sweep_options(args)
    if args.dry_run:
        spec = check_sweep(options)
        space = ", ".join(f"{p.name}={p.spec}" for p in options.params)
        print(f"{options.task}: {options.trials} trial(s) of {space}; storage {spec.shown}; "
              "nothing trained (dry run)")
        return 0
    result = run_sweep(options, on_trial=None if args.quiet else (
        lambda row: print(trial_line(row, options.metric), flush=True)))
    status = result.status
    print(status_text(status, table=False))
    print(f"{result.seconds:.0f}s on {options.workers} worker(s)")
    md_path, html_path = build_sweep_report(options.out)
    print(f"report: {md_path} and {html_path}")
    done = status.states["complete"] + status.states["pruned"]
    if done < options.trials:
        sys.stderr.write(f"rnnlab: sweep stopped at {done} of {options.trials} trials "
                         f"({result.stopped_workers} worker(s) stopped early); run the same "
                         "command again to go on\n")
        return 1
    return 0


def trial_line(row: TrialRow, metric: str | None) -> str:
    value = "" if row.value is None else f" {metric} {row.value:.4f}"
    params = " ".join(f"{k}={format_value(v)}" for k, v in row.params.items())
    seconds = "" if row.seconds is None else f" ({row.seconds:.0f}s)"
    return f"trial {row.number}: {row.state}{value}{seconds} {params}"


def format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def status_text(status: SweepStatus, table: bool = True) -> str:
    states = ", ".join(f"{n} {state}" for state, n in status.states.items() if n)
    lines = [f"study {status.study} in {status.storage}: task {status.task}, "
             f"{status.metric} ({status.direction})", f"trials: {states or 'none yet'}"]
    if table:
        lines += [trial_line(row, status.metric) for row in status.trials]
    best = status.best
    if best is None:
        lines.append("best: no complete trial yet")
        return "\n".join(lines)
    test = "" if best.test_accuracy is None else f", test accuracy {100 * best.test_accuracy:.2f}%"
    lines.append(f"best: trial {best.number}, {status.metric} {best.value:.4f}{test}")
    lines.append("best settings: " + " ".join(f"{k}={format_value(v)}"
                                              for k, v in best.params.items()))
    lines.append(f"best run folder: {best.run_folder}")
    return "\n".join(lines)


# -- status -----------------------------------------------------------------------------
def add_status_parser(commands) -> None:
    p = commands.add_parser("status", help="trials by state and the best trial of a sweep",
                            formatter_class=HelpFormatter,
                            description="Trials by state, the best trial, its settings and "
                            "run folder. Trials whose worker died are marked failed first.")
    p.add_argument("out", nargs="?", default=None, metavar="OUT",
                   help="the sweep's --out folder (its sweep.json names study and storage)")
    p.add_argument("--storage", default=None, metavar="URL", help="the study's storage")
    p.add_argument("--study", default=None, help="the study's name in the storage")
    p.add_argument("--json", action="store_true", help="everything as one JSON object")
    p.add_argument("--seed", type=int, default=0, help="unused: status draws nothing at random")
    p.add_argument("--dry-run", action="store_true", help="the same as without: status writes "
                   "only the failed state of trials whose worker died")
    p.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    status = sweep_status(args.out, storage=args.storage, study=args.study)
    if args.json:
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        print(status_text(status))
    return 0
