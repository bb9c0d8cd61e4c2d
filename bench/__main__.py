"""rnnlab's benchmark suite, in one process: ``python -m bench [--quick] [--out DIR]``.

Sections (``--quick`` keeps the LSTM rows, the synthetic tasks and the LSTM's long-sequence
row, about 3 minutes):

1. the machine: CPU, cores, torch, threads, load, float32 / bfloat16 matmul ceiling;
2. recurrent throughput on row-MNIST shapes (bench/throughput.py): bare ``nn.*``,
   rnnlab's trainer per backend and precision, the reference-style DataLoader
   pipeline; sequences/s, GFLOP/s, share of the ceiling, and the ratios the issues
   ask for, with what ``--backend auto`` picks for each model (timed in this run, in a
   fresh autotune cache, so an earlier measurement cannot stand in);
3. the synthetic tasks, batch-1 against batched (bench/recall_throughput.py and
   bench/addition_throughput.py, when present);
4. long sequences: every registered cell's default training path, time per time step
   at T=28 (F=28) against T=784 (F=1), batch 128, hidden 128;
5. full run only: 1 against 2 threads with one core busy (bench/threads.py), and
   the tuned LSTM's time to 99.0% test accuracy over 3 seeds, in float32 and (where the
   CPU has bf16 instructions) bfloat16 (bench/accuracy.py; alone: ``python -m
   bench.accuracy``).

Writes ``bench.md`` and ``bench.json`` into ``--out`` (default bench/results/).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import accuracy, bare_plain, threads, throughput
from rnnlab.core.autotune import TuneCache
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.memory import keep_freed_memory

ISSUE3_TRAINER_RATIO = 0.95  # rnnlab stock trainer / bare nn.LSTM loop
ISSUE8_SPEEDUP = 1.4  # rnnlab default / bare nn.LSTM loop, float32
ISSUE8_SHARE = 0.55  # of the float32 matmul ceiling
# issue 17: default path / bare nn.* training throughput, at least
ISSUE17_SPEEDUP = {"LSTM": 1.8, "GRU": 1.4, "RNN": 1.1, "BiLSTM": 1.5, "BiGRU": 1.5,
                   "BiRNN": 1.1}
SYNTHETIC = ("recall_throughput", "addition_throughput", "cells_long")


def machine(threads_used: int) -> dict:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                  if line.startswith("model name")), "unknown")
    flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "logical_cpus": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads_used, "load_at_start": os.getloadavg()}


def synthetic(threads_used: int, log) -> dict:
    results = {}
    for name in SYNTHETIC:
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            result = module.run(threads_used)
            result["markdown"] = module.markdown(result) if hasattr(module, "markdown") else None
        except Exception as err:  # another engineer's script: report, do not abort the suite
            result = {"error": f"{type(err).__name__}: {err}"}
        result["bench_seconds"] = time.perf_counter() - started
        results[name] = result
        torch.set_num_threads(threads_used)  # the scripts set their own
        log(f"bench: {name} done in {result['bench_seconds']:.0f}s")
    return results


def summarise(models: list[dict], picks: dict[str, dict],
              plain: dict[str, float] | None = None) -> dict:
    """The ratios the issues ask for, per model; ``picks``: auto's choice per model;
    ``plain``: the bare loop's seq/s in a plain process (bench/bare_plain.py), per model."""
    out = {}
    for m in models:
        rows = {r["method"]: r for r in m["rows"]}
        bare = rows["bare nn.*"]["train_seq_per_s"]
        stock = rows["rnnlab stock fp32"]["train_seq_per_s"]
        pick = picks[m["model"]]
        # auto's path and precision (precision auto: bf16 only where this CPU has it)
        default = rows.get(f"rnnlab {path_text(pick)}") or rows["rnnlab stock fp32"]
        entry = {"default_backend": pick["path"], "default_method": default["method"],
                 "auto": pick, "stock_trainer_over_bare": stock / bare,
                 "default_over_bare": default["train_seq_per_s"] / bare,
                 "default_over_stock": default["train_seq_per_s"] / stock,
                 "default_share_of_fp32_ceiling": default["train_share_fp32"]}
        if plain and m["model"] in plain:
            entry["default_over_bare_plain"] = default["train_seq_per_s"] / plain[m["model"]]
        if "reference pipeline" in rows:
            reference = rows["reference pipeline"]["train_seq_per_s"]
            entry["default_over_reference"] = default["train_seq_per_s"] / reference
        best = max(m["rows"], key=lambda r: r["train_seq_per_s"])
        entry["fastest"] = best["method"]
        out[m["model"]] = entry
    return out


def path_text(backend: dict) -> str:
    """``compiled bf16``: a run record's ``backend`` entry's path and precision (fp32 in a
    record from before it named the precision)."""
    return f"{backend['path']} {backend.get('precision', 'fp32')}"


def pick_text(pick: dict) -> str:
    """``compiled bf16 (measured: stock fp32 70.1, compiled fp32 47.3, ... ms)``, as the
    table says it."""
    ms = ", ".join(f"{path} {value:.1f}" for path, value in pick["ms_per_step"].items())
    return f"{path_text(pick)} ({pick['why']}{': ' + ms + ' ms' if ms else ''})"


def target_text(model: str, ratio: float | None) -> str:
    """``1.8: missed`` for issue 17's speed-up target of ``model``."""
    target = ISSUE17_SPEEDUP.get(model)
    if target is None or ratio is None:
        return "–"
    return f"{target}: {'met' if ratio >= target else 'missed'}"


def fmt(value, spec=",.0f") -> str:
    return "–" if value is None else format(value, spec)


def long_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    (short, _), (long, _) = throughput.LONG_SHAPES
    lines = ["", f"## Long sequences: the default path's cost per time step, T={short} against "
             f"T={long}", "",
             f"Batch {throughput.LONG_BATCH}, hidden {throughput.LONG_HIDDEN}, one layer; "
             f"T={short} reads 28 features a step, T={long} one (row- and pixel-MNIST); a "
             "training step (forward, backward) of the classifier on `--backend auto`, its "
             "median over a few steps divided by T. Target: ratio <= "
             f"{throughput.LONG_TARGET}.", "",
             f"| cell | path at T={short} | ms per time step | path at T={long} | "
             "ms per time step | ratio | target |", "|---|---|---:|---|---:|---:|---|"]
    for r in rows:
        at = [r["by_steps"][steps] for steps, _ in throughput.LONG_SHAPES]
        paths = [f"{path_text(a['backend'])} ({a['backend']['why']})" for a in at]
        lines.append(f"| {r['cell']} | {paths[0]} | {at[0]['ms_per_time_step']:.4f} | "
                     f"{paths[1]} | {at[1]['ms_per_time_step']:.4f} | {r['ratio']:.2f} | "
                     f"{'met' if r['meets_target'] else 'missed'} |")
    return lines


def markdown(result: dict) -> str:
    mc, ceil = result["machine"], result["ceiling"]
    lines = ["# rnnlab benchmark", "",
             f"Machine: {mc['cpu']}, {mc['cores']} cores available, torch {mc['torch']}, "
             f"{mc['threads']} threads; load average at start {mc['load_at_start'][0]:.2f}, "
             f"at end {result['load_at_end'][0]:.2f}. "
             f"Mode: {'quick' if result['quick'] else 'full'}; "
             f"{result['seconds']:.0f}s in all.", "",
             f"Matmul ceiling (2048x2048, {ceil['threads']} threads): "
             f"float32 {ceil['fp32']:.0f} GFLOP/s, bfloat16 {ceil['bf16']:.0f} GFLOP/s.", "",
             "## Recurrent throughput, row-MNIST shapes "
             "(T=28, F=28, batch 500; inference batch 2000)", "",
             "| model | method | train seq/s | train GFLOP/s | share of ceiling | infer seq/s | "
             "first step (compile) s |", "|---|---|---:|---:|---:|---:|---:|"]
    for m in result["models"]:
        label = f"{m['model']} ({m['hidden']})"
        for r in m["rows"]:
            lines.append(f"| {label} | {r['method']} | {fmt(r['train_seq_per_s'])} | "
                         f"{r['train_gflops']:.0f} | {100 * r['train_share']:.0f}% | "
                         f"{fmt(r['infer_seq_per_s'])} | {r['compile_seconds']:.1f} |")
    if not result["models"][0]["mnist"]:
        lines += ["", "(MNIST not fetched: random stand-in images of the same shape.)"]
    lines += ["", "auto picks: what `--backend auto --precision auto` (the defaults) chooses "
              "for a 7-epoch batch-500 run, and why (layer ms per training step as timed for "
              "the choice; bf16 is timed only on a CPU with bf16 matmul hardware); default: "
              "that path's row above, its GFLOP/s counted against the fp32 ceiling; bare: "
              "the bare nn.* row above, in this process, which keeps "
              "freed memory as rnnlab's runs do; bare (plain process): the same loop in a "
              "fresh Python process with glibc's default allocator settings, as a user's own "
              "script runs it (bench/bare_plain.py), the median over "
              f"{bare_plain.PROCESSES} such processes.", "",
              "| model | auto picks | stock trainer / bare | default / bare | "
              "default / bare (plain process) | default / stock trainer | "
              "default share of fp32 ceiling | default / reference pipeline | fastest | "
              "issue 17: default / bare (plain process) at least |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {pick_text(s['auto'])} | "
                     f"{s['stock_trainer_over_bare']:.2f} | {s['default_over_bare']:.2f} | "
                     f"{fmt(s.get('default_over_bare_plain'), '.2f')} | "
                     f"{s['default_over_stock']:.2f} | "
                     f"{100 * s['default_share_of_fp32_ceiling']:.0f}% | "
                     f"{fmt(s.get('default_over_reference'), '.2f')} | {s['fastest']} | "
                     f"{target_text(name, s.get('default_over_bare_plain'))} |")
    runs = result.get("bare_plain_runs")
    if runs:
        spread = "; ".join(f"{name} {' / '.join(fmt(v) for v in found)}"
                           for name, found in runs.items())
        lines += ["", f"bare (plain process), train seq/s in each process: {spread}."]
    lstm = result["summary"].get("LSTM")
    if lstm:
        lines += ["", "Targets for LSTM(100): stock trainer / bare "
                  f"{lstm['stock_trainer_over_bare']:.2f} (issue 3: >= {ISSUE3_TRAINER_RATIO}); "
                  f"default / bare {lstm['default_over_bare']:.2f} (issue 8: >= {ISSUE8_SPEEDUP}); "
                  "default share of the float32 ceiling "
                  f"{100 * lstm['default_share_of_fp32_ceiling']:.0f}% "
                  f"(issue 8: >= {100 * ISSUE8_SHARE:.0f}%); default / reference pipeline "
                  f"{fmt(lstm.get('default_over_reference'), '.2f')} (issue 8: >= 1)."]
    lines += long_markdown(result.get("long", []))
    lines += ["", "## Synthetic tasks: batch-1 against batched", ""]
    for name, r in result["synthetic"].items():
        if r.get("markdown"):
            lines += [r["markdown"], ""]
        else:
            lines += [f"{name}: {r.get('skipped') or r.get('error')}", ""]
    if "threads" in result:
        lines += ["## Threads: 1 against 2, idle and with one core busy", "",
                  f"{result['threads']['workload']}; each in a fresh process.", "",
                  "| backend | threads | other load | seq/s |", "|---|---:|---|---:|"]
        for r in result["threads"]["rows"]:
            lines.append(f"| {r['backend']} | {r['threads']} | "
                         f"{'one busy core' if r['busy_core'] else 'none'} | "
                         f"{r['seq_per_s']:,.0f} |")
        lines.append("")
    if "accuracy" in result:
        lines += accuracy.markdown(result["accuracy"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="LSTM rows and synthetic tasks only (~1 min)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"),
                        help="folder for bench.md and bench.json")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the measurements")
    parser.add_argument("--models", nargs="+", choices=list(throughput.MODELS), default=None,
                        help="models of the throughput table (default: all; --quick: LSTM)")
    parser.add_argument("--epochs", type=int, default=accuracy.EPOCHS,
                        help="epochs of each tuned-LSTM run")
    parser.add_argument("--skip", nargs="+", default=[],
                        choices=["synthetic", "long", "threads", "accuracy"],
                        help="sections to leave out")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as training runs do (core/memory.py)
    result: dict = {"quick": args.quick, "machine": {**machine(args.threads),
                                                      "keeps_freed_memory": kept}}
    result["ceiling"] = throughput.ceiling(args.threads, 0.5 if args.quick else 1.5)
    log(f"bench: ceiling fp32 {result['ceiling']['fp32']:.0f}, "
        f"bf16 {result['ceiling']['bf16']:.0f} GFLOP/s")
    names = args.models or (["LSTM"] if args.quick else list(throughput.MODELS))
    steps, rounds = (4, 3) if args.quick else (8, 4)
    result["models"] = throughput.run_models(names, args.threads, result["ceiling"], steps, rounds,
                                             log=log)
    # a fresh cache: auto's picks are timed in this run, beside the rows they are read against
    tune_cache = TuneCache(Path(tempfile.mkdtemp(prefix="rnnlab-bench-")) / "autotune.json")
    picks = {m["model"]: throughput.auto_pick(m["cell"], m["hidden"], m["bidirectional"],
                                              tune_cache) for m in result["models"]}
    # the bare loop again in a plain process: a user's script keeps glibc's defaults
    result["bare_plain_runs"] = bare_plain.measure_models(names, args.threads, steps, rounds)
    result["bare_plain"] = {name: statistics.median(runs)
                            for name, runs in result["bare_plain_runs"].items()}
    result["summary"] = summarise(result["models"], picks, result["bare_plain"])
    if "long" not in args.skip:
        cells = ("lstm",) if args.quick else None
        result["long"] = throughput.long_sequences(cells, tune_cache, log=log)
    if "synthetic" not in args.skip:
        result["synthetic"] = synthetic(args.threads, log)
    else:
        result["synthetic"] = {}
    if not args.quick and "threads" not in args.skip:
        result["threads"] = threads.run(log=log)
    if not args.quick and "accuracy" not in args.skip:
        torch.set_num_threads(args.threads)
        result["accuracy"] = accuracy.run(args.epochs, log=log)
    result["load_at_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    atomic_write_text(out / "bench.md", text)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=1, default=str))
    print(text)
    log(f"bench: wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
