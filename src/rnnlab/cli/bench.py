"""``rnnlab bench --autotune``: time the training paths ``--backend auto`` chooses
between, ahead of time, for the shapes the experiments train."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch

from rnnlab.cli.parsing import HelpFormatter
from rnnlab.core.autotune import PATHS, Timing, TuneCache, TuneKey, pick
from rnnlab.core.backends import layer_measurer, supports
from rnnlab.core.models import make_recurrent
from rnnlab.core.threads import configure_threads
from rnnlab.study.experiments import OTHER_PROFILES, PROFILES, catalogue
from rnnlab.tasks.base import Experiment
from rnnlab.tasks.registry import REGISTRY

DESCRIPTION = """\
--backend auto trains each recurrent layer on the path measured fastest on this
machine (stock nn.* or the compiled step loop), timing a few steps of each the first
time a configuration runs and caching the times (autotune.json beside the data:
$RNNLAB_DATA, else ~/.cache/rnnlab). --autotune does that timing now, for every
experiment of the chosen profile, so that later runs start without it; each key
(cell, shapes, threads, precision, CPU, torch version) is timed once. Layers the
compiled path cannot run (cells without kernels, ...) are listed, not timed.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="time the training paths auto chooses between",
                            description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--autotune", action="store_true", required=True,
                   help="fill the autotune cache for the experiments' shapes")
    p.add_argument("--profile", choices=["all", *PROFILES, *OTHER_PROFILES], default="all",
                   help="whose experiments: all (reference and tuned), one of them, or a "
                   "long-range profile")
    p.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                   help="torch threads to time at, one key each (default: what a run here "
                   "would use now)")
    p.add_argument("--again", action="store_true", help="time keys already cached too")
    p.add_argument("--dry-run", action="store_true", help="list the keys; time nothing")
    p.set_defaults(func=run_bench)


@dataclass
class Target:
    """One cache key and what it is for: the layer, its batch shape, the longest run."""

    key: TuneKey
    layer: torch.nn.Module
    shape: tuple[int, int, int]  # (B, T, F)
    train_steps: int
    unsupported: str | None  # why the compiled path cannot run it; None: both paths can


def experiment_target(exp: Experiment) -> Target | None:
    """The layer and batch shape an experiment trains, or None when its backend is not auto.
    T is the task's mean length (packed variable-length batches run stock anyway)."""
    if exp.train.backend != "auto":
        return None
    m, task = exp.model, REGISTRY.get(exp.task).from_dict(exp.task_config)
    batch, steps = exp.train.batch_size, round(task.mean_steps())
    key = TuneKey(cell=m.cell, bidirectional=m.bidirectional, layers=m.num_layers, batch=batch,
                  steps=steps, features=m.input_size, hidden=m.hidden_size,
                  threads=torch.get_num_threads(), precision=exp.train.precision)
    train_steps = exp.train.epochs * math.ceil(task.examples_per_epoch() / batch)
    layer = make_recurrent(m)
    return Target(key, layer, (batch, steps, m.input_size), train_steps, supports(layer))


def targets(profile: str) -> list[Target]:
    """One target per distinct key of ``profile``'s experiments (the longest run kept)."""
    found: dict[str, Target] = {}
    for exp in catalogue(profile, seeds=1):
        target = experiment_target(exp)
        if target is None:
            continue
        text = target.key.text()
        if text not in found or found[text].train_steps < target.train_steps:
            found[text] = target
    return list(found.values())


def timing_of(target: Target, cache: TuneCache, again: bool) -> tuple[Timing | None, str]:
    """The target's times and where they came from: cached, measured, or not timed."""
    if target.unsupported is not None:
        return None, f"stock only: {target.unsupported}"
    cached = None if again else cache.get(target.key)
    if cached is not None:
        return cached, "cached"
    measurer = layer_measurer(target.layer, target.shape, target.key.precision,
                              log=lambda _line: None)
    timing = measurer.measure(PATHS)
    if "compiled" not in timing.ms_per_step:
        return timing, "compiled failed to compile"
    cache.put(target.key, timing)
    return timing, "measured"


def row(target: Target, timing: Timing | None, source: str) -> str:
    """One line of the table: the key, the run's steps, auto's path, each path's ms/step."""
    ms = timing.ms_per_step if timing is not None else {}
    if timing is not None:
        path = pick(timing, target.train_steps, timing.compile_seconds)
    else:
        path = "stock" if target.unsupported else "?"
    cells = [f"{ms[p]:8.2f}" if p in ms else f"{'-':>8}" for p in PATHS]
    return f"{target.key.shape():<52} {target.train_steps:>7} {path:<8} {' '.join(cells)}  {source}"


def listed(target: Target, cache: TuneCache) -> str:
    """The dry run's line: what --autotune would do with the target."""
    if target.unsupported is not None:
        return row(target, None, f"stock only: {target.unsupported}")
    cached = cache.get(target.key)
    return row(target, cached, "cached" if cached else "to time")


def run_bench(args: argparse.Namespace) -> int:
    thread_counts = args.threads or [configure_threads(None)]
    cache = TuneCache()
    lines = []
    for threads in thread_counts:
        configure_threads(threads)
        found = targets(args.profile)
        for number, target in enumerate(found, 1):
            if args.dry_run:
                lines.append(listed(target, cache))
                continue
            print(f"[{number}/{len(found)}] {target.key.shape()}", file=sys.stderr, flush=True)
            lines.append(row(target, *timing_of(target, cache, args.again)))
    header = f"{'key':<52} {'steps':>7} {'auto':<8} {'stock ms':>8} {'compiled':>8}  source"
    print("\n".join([header, *lines]))
    print(f"cache: {cache.path}" + (" (dry run: nothing timed)" if args.dry_run else ""))
    return 0
