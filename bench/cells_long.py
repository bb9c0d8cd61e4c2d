"""minGRU and minLSTM's log-space parallel scan (how they train) against their own step
loop, training time per step (forward and backward) at T = 784 and 4096.

Shapes: batch 128, hidden 128, one input feature (pixel-MNIST's), one layer; the loss
reads h_n, as the classifier does. Each time is the median of a few runs after a warm-up.
Every cell's per-step cost at T = 28 against T = 784 is in the throughput section
(bench/throughput.py ``long_sequences``), on the default training path.

Usage: ``python bench/cells_long.py [--threads N] [--quick] [--json OUT]``; a later
``python -m bench`` calls :func:`run` and :func:`markdown`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rnnlab.core.cell_layers.stack import RecurrentCell
from rnnlab.core.cells import get_cell
from rnnlab.core.models import final_hidden

PARALLEL = ("mingru", "minlstm")
BATCH, HIDDEN, FEATURES = 128, 128, 1
LONG, LONGER = 784, 4096


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def layer_step(name: str, steps: int, step_loop: bool = False):
    """One forward and backward pass of a fresh layer over (BATCH, steps, FEATURES);
    ``step_loop``: the autograd step loop instead of the cell's own scan."""
    torch.manual_seed(0)
    rnn = get_cell(name).make(input_size=FEATURES, hidden_size=HIDDEN).train()
    cell = rnn.cells["l0"]
    x = torch.randn(BATCH, steps, FEATURES)

    def run() -> None:
        rnn.zero_grad(set_to_none=True)
        if step_loop:
            h_n = RecurrentCell.scan(cell, x.transpose(0, 1), None)[1][0]  # h_T
        else:
            h_n = final_hidden(rnn(x)[1])
        h_n.sum().backward()

    return run


def run(threads: int | None = 1, quick: bool = False) -> dict:
    if threads:
        torch.set_num_threads(threads)
    repeats = 2 if quick else 3
    scans = []
    for name in PARALLEL:
        for steps in ((LONG,) if quick else (LONG, LONGER)):
            parallel = timed(layer_step(name, steps), 1 if steps == LONGER else repeats)
            loop = timed(layer_step(name, steps, step_loop=True),
                         1 if steps == LONGER else repeats)
            scans.append({"cell": name, "T": steps, "parallel_ms_per_step": 1e3 * parallel / steps,
                          "step_loop_ms_per_step": 1e3 * loop / steps,
                          "parallel_speedup": loop / parallel})
    return {"threads": torch.get_num_threads(), "batch": BATCH, "hidden": HIDDEN, "scans": scans}


def markdown(result: dict) -> str:
    lines = [f"minGRU / minLSTM training per step, parallel scan against the step loop, batch "
             f"{result['batch']}, hidden {result['hidden']}, {result['threads']} thread(s).", "",
             "| cell | T | parallel scan ms/step | step loop ms/step | parallel speed-up |",
             "|---|---|---|---|---|"]
    for row in result["scans"]:
        lines.append(f"| {row['cell']} | {row['T']} | {row['parallel_ms_per_step']:.3f} | "
                     f"{row['step_loop_ms_per_step']:.3f} | {row['parallel_speedup']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no T=4096")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = run(args.threads, args.quick)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
