"""Training throughput on digit recall: the batch-size-1 loop against batched training.

The same model (LSTM, 10 inputs, hidden 10, a linear layer to 10 classes; Adam,
lr 0.002) is trained three ways, and sequences per second are measured after a
short warm-up:

- ``reference loop``: the exercise's loop, one unpadded sequence per step, no packing;
- ``rnnlab, batch 1``: ``rnnlab train recall --batch-size 1`` (shuffled in-memory
  sets, each sequence packed alone);
- ``rnnlab, batch B``: rnnlab's batched training on fresh sequences (generated per
  batch, padded, packed), the data generation included in the time.

The ratio is the best batched rate over the faster batch-1 rate. Target: >= 100x.

    python bench/recall_throughput.py [--threads 1] [--batch-sizes 256 1024 4096]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.seeding import stream_generator
from rnnlab.core.threads import configure_threads
from rnnlab.core.train import (
    Batch,
    ClassificationObjective,
    ShuffledBatches,
    TensorDataset,
    train_one_epoch,
)
from rnnlab.tasks.recall.data import DigitSequences, FreshBatches

HIDDEN = 10
LR = 0.002
TARGET_RATIO = 100.0
BATCH_SIZES = (256, 1024, 4096)


def new_model() -> tuple[SequenceClassifier, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", input_size=10, hidden_size=HIDDEN))
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def reference_loop(model, optimizer,
                   sequences: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """The exercise's loop: one (1, L, 10) sequence per step, read at its last step."""
    model.train()
    for x, y in sequences:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(step: Callable[[], int], warmup: int, min_seconds: float) -> tuple[int, float]:
    """Call ``step() -> sequences`` ``warmup`` times, then until ``min_seconds`` have passed."""
    for _ in range(warmup):
        step()
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds:
        done += step()
    return done, elapsed


def rnnlab_steps(model, optimizer, batches: Iterator[Batch], steps: int) -> int:
    """``steps`` batches of rnnlab's ``train_one_epoch``; returns the sequences seen."""
    taken = list(itertools.islice(batches, steps))
    train_one_epoch(model, iter(taken), ClassificationObjective(), optimizer)
    return sum(len(b) for b in taken)


def run(threads: int | None = 1, batch_sizes: Sequence[int] = BATCH_SIZES,
        min_seconds: float = 2.0) -> dict:
    """Sequences per second of each loop, and the batched / batch-1 ratio."""
    threads = configure_threads(threads)
    task = DigitSequences()
    data = task.generate(800, stream_generator("rnnlab-recall", 0, "bench"),
                         task.cycled_lengths(800))
    rows = []

    model, optimizer = new_model()
    singles = [(data.x[i : i + 1, : int(n)], data.y[i : i + 1]) for i, n in enumerate(data.lengths)]
    block = 100  # sequences per timed call

    def reference_step() -> int:
        start = (reference_step.calls * block) % len(singles)
        reference_step.calls += 1
        reference_loop(model, optimizer, singles[start : start + block])
        return block

    reference_step.calls = 0
    done, seconds = timed(reference_step, warmup=1, min_seconds=min_seconds)
    rows.append({"loop": "reference loop", "batch_size": 1, "sequences": done, "seconds": seconds})

    model, optimizer = new_model()
    shuffled = ShuffledBatches(TensorDataset(data.x, data.y, data.lengths), 1, seed=0)
    batches = itertools.chain.from_iterable(shuffled.epoch_batches(e) for e in itertools.count(1))
    done, seconds = timed(lambda: rnnlab_steps(model, optimizer, batches, block), warmup=1,
                          min_seconds=min_seconds)
    rows.append({"loop": "rnnlab, batch 1", "batch_size": 1, "sequences": done, "seconds": seconds})

    for batch_size in batch_sizes:
        model, optimizer = new_model()
        fresh = FreshBatches(task, 10**12, batch_size, seed=0).epoch_batches(1)
        done, seconds = timed(lambda m=model, o=optimizer, f=fresh: rnnlab_steps(m, o, f, 1),
                              warmup=2, min_seconds=min_seconds)
        rows.append({"loop": f"rnnlab, batch {batch_size}", "batch_size": batch_size,
                     "sequences": done, "seconds": seconds})

    for row in rows:
        row["sequences_per_second"] = row["sequences"] / row["seconds"]
    single = max(r["sequences_per_second"] for r in rows if r["batch_size"] == 1)
    batched = max((r for r in rows if r["batch_size"] > 1), key=lambda r: r["sequences_per_second"])
    ratio = batched["sequences_per_second"] / single
    return {"name": "recall_throughput", "threads": threads, "hidden": HIDDEN, "rows": rows,
            "ratio": ratio, "best_batch_size": batched["batch_size"], "target_ratio": TARGET_RATIO,
            "passed": ratio >= TARGET_RATIO}


def markdown(result: dict) -> str:
    lines = [f"Digit recall training throughput (LSTM hidden {result['hidden']}, "
             f"{result['threads']} thread(s))", "",
             "| loop | batch size | sequences | seconds | sequences/s |",
             "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['loop']} | {r['batch_size']} | {r['sequences']} | {r['seconds']:.2f} "
                     f"| {r['sequences_per_second']:,.0f} |")
    verdict = "meets" if result["passed"] else "MISSES"
    lines += ["", f"batched (batch {result['best_batch_size']}) / batch-1 loop: "
              f"**{result['ratio']:.0f}x** ({verdict} the {result['target_ratio']:.0f}x target)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per loop")
    args = parser.parse_args(argv)
    result = run(args.threads, args.batch_sizes, args.seconds)
    print(markdown(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
