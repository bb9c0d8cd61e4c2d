"""``rnnlab reproduce`` and ``rnnlab report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.cli.parsing import HelpFormatter
from rnnlab.cli.train import add_device_option
from rnnlab.core.errors import RunFolderError
from rnnlab.study import reproduce as reproduce_module
from rnnlab.study.experiments import OTHER_PROFILES, PROFILES
from rnnlab.study.report import build_report, load_manifest
from rnnlab.study.reproduce import ReproduceOptions, reproduce
from rnnlab.study.sweep_report import build_sweep_report, is_sweep_folder, load_sweep
from rnnlab.tasks.registry import REGISTRY


def add_reproduce_parser(commands) -> None:
    d = ReproduceOptions()
    p = commands.add_parser("reproduce", help="run the whole exercise and write the report",
                            formatter_class=HelpFormatter, description=reproduce_module.__doc__)
    g = p.add_argument_group("what to run")
    g.add_argument("--profile", choices=[*PROFILES, *OTHER_PROFILES, "all"], default=d.profile,
                   help="reference: the exercise's settings with its flaws fixed; "
                   "tuned: rnnlab's best recipes over several seeds; all: both; long-range: "
                   "every cell on the long-memory tasks at delays 50 to 1000 (about 1.5 hours "
                   "on 2 cores); long-range-recipes: the full-budget long-memory runs and "
                   "pixel-MNIST (hours); the last two are not part of all")
    g.add_argument("--quick", action="store_true", help="every configuration on a tiny budget")
    g.add_argument("--dry-run", action="store_true", help="same as --quick")
    g.add_argument("--tasks", nargs="+", choices=REGISTRY.names(), default=None, metavar="TASK",
                   help=f"only these tasks ({', '.join(REGISTRY.names())}; default: all)")
    g.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None,
                   help="also run each task's ablations (a flaw of the exercise put back) to "
                   "measure what fixing it changed; default: on with --quick and --profile all, "
                   "off for a full --profile reference")
    g.add_argument("--seeds", type=int, default=d.seeds, help="seeds per tuned configuration")
    g.add_argument("--seed", type=int, default=d.seed, help="first seed (the reference's)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default=None, help="MNIST data root")
    g = p.add_argument_group("output and runtime")
    g.add_argument("--out", default=d.out, help="output folder for runs and report")
    g.add_argument("--force", action="store_true", help="rerun finished runs")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (with --jobs 1)")
    g.add_argument("--jobs", type=int, default=d.jobs,
                   help="runs trained at once, each in its own one-thread process; "
                   "2 on a 2-core machine finishes about 20%% sooner")
    g.add_argument("--no-figures", action="store_true",
                   help="skip per-run figures (the report still has its own)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_option(g)
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    options = ReproduceOptions(
        profile=args.profile, quick=bool(args.quick or args.dry_run),
        tasks=tuple(args.tasks) if args.tasks else None, ablations=args.ablations,
        seeds=args.seeds, seed=args.seed, out=args.out, force=args.force, threads=args.threads,
        jobs=args.jobs, figures=not args.no_figures, quiet=args.quiet, data_dir=args.data_dir,
        on_run=lambda line: print(line, flush=True), device=args.device)
    result = reproduce(options)
    print(f"{result.trained} run(s) trained, {result.reused} reused, {result.seconds:.0f}s",
          flush=True)
    print(f"report: {result.report[0]} and {result.report[1]}")
    return 0


def add_report_parser(commands) -> None:
    p = commands.add_parser("report", help="rebuild the report from run records",
                            formatter_class=HelpFormatter,
                            description="Rebuild report.md and report.html of a reproduction "
                            "(from its reproduce.json) or of a sweep (from its sweep.json), "
                            "and the run records only.")
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="the --out folder of `rnnlab reproduce` or `rnnlab sweep`")
    p.add_argument("--data-dir", default=None, help="MNIST data root (for the row of test images)")
    p.add_argument("--seed", type=int, default=0, help="unused: the report draws nothing at random")
    p.add_argument("--dry-run", action="store_true",
                   help="check RUNS_DIR has a reproduce.json, write nothing")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    out = Path(args.runs_dir)
    if not out.is_dir():
        raise RunFolderError(f"{out} is not a folder; give the --out folder of `rnnlab reproduce`")
    if is_sweep_folder(out):
        return run_sweep_report(out, args.dry_run)
    if args.dry_run:
        manifest = load_manifest(out)
        print(f"{out}: {len(manifest['experiments'])} experiment(s); nothing written (dry run)")
        return 0
    md_path, html_path = build_report(out, data_dir=args.data_dir)
    print(f"report: {md_path} and {html_path}")
    return 0


def run_sweep_report(out: Path, dry_run: bool) -> int:
    """The report of a sweep folder (one with sweep.json instead of reproduce.json)."""
    if dry_run:
        records = load_sweep(out)
        print(f"{out}: sweep study {records.study}, {len(records.trials)} trial record(s); "
              "nothing written (dry run)")
        return 0
    md_path, html_path = build_sweep_report(out)
    print(f"report: {md_path} and {html_path}")
    return 0
