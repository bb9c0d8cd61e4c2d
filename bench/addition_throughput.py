"""Binary addition: training throughput of the reference's batch-size-1 loop against
rnnlab's batched trainer, on the same model (LSTM, hidden 5, one logit per step),
the same lengths (uniform in 1..20) and the same loss (MSE of the sigmoid).

- batch-1 loop: the exercise's way, one pair per step, a plain PyTorch loop over
  the 250 reference pairs (``model(x)``, MSE, ``backward``, Adam step);
- rnnlab batched: ``rnnlab.core.train.train_one_epoch`` over fresh generated batches
  (generation, padding, packing and masking included in the time).

Usage: ``python bench/addition_throughput.py [--threads N] [--json OUT]``; a later
``python -m bench`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rnnlab.core.models import ModelConfig, build_model
from rnnlab.core.threads import configure_threads
from rnnlab.core.train import TrainConfig, make_optimizer, set_seed, train_one_epoch
from rnnlab.tasks.addition.data import BinaryPairs, BitObjective, FreshBatches

MODEL = ModelConfig(cell="lstm", input_size=2, hidden_size=5, num_outputs=1)
LENGTHS = range(1, 21)
BATCH_SIZES = (256, 1024, 4096)
TARGET_RATIO = 100.0


def fresh_model():
    set_seed(0)
    model = build_model("per_step", MODEL)
    return model, make_optimizer(model, TrainConfig(lr=0.01))


def batch1_loop(pairs: int = 250) -> Callable[[], int]:
    """One pass of the reference loop over ``pairs`` pairs, one (1, L, 2) pair per
    optimizer step; returns a function that runs a pass and gives the pairs done."""
    data = BinaryPairs(0).sample(pairs, LENGTHS, "bench")
    samples = [(x[None, :n], y[None, :n])
               for x, y, n in zip(data.x, data.y, data.lengths.tolist(), strict=True)]
    model, optimizer = fresh_model()
    model.train()

    def one_pass() -> int:
        for x, y in samples:
            loss = F.mse_loss(torch.sigmoid(model(x)), y)  # (1, L) sigmoid outputs vs bits
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return pairs

    return one_pass


def rnnlab_batched(batch_size: int, by_length: bool = False,
                   batches: int = 4) -> Callable[[], int]:
    """One epoch of rnnlab's trainer over ``batches`` fresh batches of ``batch_size`` pairs."""
    model, optimizer = fresh_model()
    objective = BitObjective("mse")
    source = FreshBatches(BinaryPairs(0), LENGTHS, batch_size * batches, batch_size,
                          by_length=by_length)
    epochs = iter(range(1, 1_000_000))

    def one_pass() -> int:
        train_one_epoch(model, source.epoch_batches(next(epochs)), objective, optimizer)
        return batch_size * batches

    return one_pass


def run(threads: int | None = 1, repeats: int = 3) -> dict:
    """Both loops on ``threads`` torch threads; rows with the speed-up over batch 1.

    Each method runs a warm-up pass, then ``repeats`` timed passes taken in turns with
    the other methods, and keeps its fastest: load from other processes on a shared
    machine then hits every method alike and biases the ratios as little as possible.
    """
    threads = configure_threads(threads)
    methods = [("batch-1 loop (reference)", 1, batch1_loop())]
    for by_length in (False, True):
        name = ("rnnlab batched, one length per batch" if by_length
                else "rnnlab batched, mixed lengths (packed)")
        methods += [(name, b, rnnlab_batched(b, by_length)) for b in BATCH_SIZES]
    best = [math.inf] * len(methods)
    sequences = [one_pass() for _, _, one_pass in methods]  # warm-up
    for _ in range(repeats):
        for i, (_, _, one_pass) in enumerate(methods):
            started = time.perf_counter()
            one_pass()
            best[i] = min(best[i], time.perf_counter() - started)
    rows = [{"method": name, "batch_size": size, "sequences": n, "seconds": seconds,
             "sequences_per_s": n / seconds}
            for (name, size, _), n, seconds in zip(methods, sequences, best, strict=True)]
    base = rows[0]["sequences_per_s"]
    for row in rows:
        row["ratio"] = row["sequences_per_s"] / base
    top = max(rows, key=lambda r: r["ratio"])
    mixed = max((r for r in rows if "mixed" in r["method"]), key=lambda r: r["ratio"])
    return {"benchmark": "addition_throughput", "threads": threads, "torch": torch.__version__,
            "model": "LSTM hidden 5, lengths 1..20, MSE", "repeats": repeats, "rows": rows,
            "best_ratio": top["ratio"], "best_method": top["method"],
            "best_batch_size": top["batch_size"], "best_mixed_ratio": mixed["ratio"],
            "target_ratio": TARGET_RATIO, "meets_target": top["ratio"] >= TARGET_RATIO}


def markdown(result: dict) -> str:
    lines = [f"Binary addition training throughput ({result['model']}, "
             f"{result['threads']} thread(s), torch {result['torch']})", "",
             "| method | batch | sequences/s | vs batch-1 |", "|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['batch_size']} | {row['sequences_per_s']:,.0f} | "
                     f"{row['ratio']:.1f}x |")
    verdict = "meets" if result["meets_target"] else "misses"
    lines += ["", f"Best: {result['best_ratio']:.0f}x ({result['best_method']}, batch "
                  f"{result['best_batch_size']}; {verdict} the {result['target_ratio']:.0f}x "
                  f"target); mixed lengths at best {result['best_mixed_ratio']:.0f}x.",
              f"Each method: fastest of {result['repeats']} timed passes, taken in turns."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.threads)
    print(markdown(result))
    if args.json:
        from rnnlab.core.fileio import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
