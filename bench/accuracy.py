"""Row-MNIST: the tuned LSTM recipe's training time to 99.0% test accuracy, over seeds.

The recipe: LSTM(128) with dropout 0.1 before the head, random shifts of up to 2 pixels,
Adam 5e-3 with cosine decay over 12 epochs, gradient norm clipped to 1, batch 256, the
50,000 / 10,000 train / validation split. Without the dropout and the shifts the LSTM
fits the training set (99.97%) and its test accuracy stops at 98.8% (seed 2111, bf16,
12 epochs); with them the same seed passed 99.0% at epoch 7. Test accuracy is
computed after every epoch (outside the timed training); a run's time to the target is
its training seconds up to the end of the first epoch whose test accuracy is at least
:data:`TARGET` (issue 17: the mean over 3 seeds). Each run still finishes its schedule,
so its final accuracy can be compared across precisions. bfloat16 runs only where the
CPU has bf16 matmul instructions (``slow_bf16_reason``): elsewhere it is slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from rnnlab.core.autotune import cpu_model
from rnnlab.core.backends import slow_bf16_reason, use_backend
from rnnlab.core.fileio import atomic_write_text
from rnnlab.core.memory import keep_freed_memory
from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.train import (
    ClassificationObjective,
    TrainConfig,
    evaluate,
    make_optimizer,
    make_scheduler,
    set_seed,
    train_one_epoch,
)
from rnnlab.tasks.mnist import MnistTask
from rnnlab.tasks.mnist.data import MnistConfig, data_root_of, load_splits

TARGET = 0.99
SEEDS = (2111, 2112, 2113)
EPOCHS = 12
RECIPE_MODEL = ModelConfig(cell="lstm", hidden_size=128, dropout=0.1)
RECIPE_DATA = MnistConfig(augment_shift=2)


def recipe(epochs: int, backend: str, precision: str, seed: int = SEEDS[0]) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=256, lr=5e-3, schedule="cosine", clip=1.0,
                       seed=seed, backend=backend, precision=precision)


def train_recipe(epochs: int, backend: str = "auto", precision: str = "fp32",
                 seed: int = SEEDS[0], log=print) -> dict:
    """One run of the recipe; per-epoch test accuracy and cumulative training seconds."""
    cfg = recipe(epochs, backend, precision, seed)
    splits = load_splits(RECIPE_DATA, cfg.seed, data_root_of(None))
    set_seed(cfg.seed)
    model = SequenceClassifier(RECIPE_MODEL)
    data = MnistTask(RECIPE_DATA).training_data(splits, cfg)
    test_batches = splits.test.in_order(cfg.eval_batch_size)
    objective = ClassificationObjective()
    optimizer = make_optimizer(model, cfg)
    train_steps = cfg.epochs * data.train.num_batches()
    scheduler = make_scheduler(optimizer, cfg, train_steps)
    runners = use_backend(model, cfg.backend, cfg.precision, train_steps=train_steps,
                          log=lambda _m: None)
    trained, rows, reached = 0.0, [], None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        stats = train_one_epoch(model, data.train.epoch_batches(epoch), objective, optimizer,
                                scheduler, cfg.clip)
        trained += time.perf_counter() - started
        test = evaluate(model, test_batches, objective)
        rows.append({"epoch": epoch, "train_seconds": trained,
                     "train_accuracy": stats["accuracy"], "test_accuracy": test["accuracy"]})
        if reached is None and test["accuracy"] >= TARGET:
            reached = {"epoch": epoch, "train_seconds": trained}
        log(f"bench: {backend} {precision} seed {seed} epoch {epoch}: test "
            f"{100 * test['accuracy']:.2f}% after {trained:.0f}s of training")
    resolved = runners[0].resolved if runners else "stock"
    return {"backend": backend, "resolved": resolved, "precision": precision, "epochs": epochs,
            "seed": seed, "rows": rows, "final_test_accuracy": rows[-1]["test_accuracy"],
            "reached_target": reached, "threads": torch.get_num_threads()}


def variants() -> tuple[tuple[str, str], ...]:
    """(backend, precision) pairs worth timing here: bf16 only with bf16 matmul hardware."""
    return (("auto", "fp32"),) + ((("auto", "bf16"),) if slow_bf16_reason() is None else ())


def run(epochs: int, seeds: tuple[int, ...] = SEEDS, log=print) -> dict:
    """Every variant over ``seeds``, and :func:`summarise` of them."""
    train = recipe(epochs, "auto", "fp32").to_dict()
    runs = [train_recipe(epochs, b, p, seed, log) for b, p in variants() for seed in seeds]
    return {"target": TARGET, "recipe": {"model": RECIPE_MODEL.to_dict(), "train": train,
                                         "data": RECIPE_DATA.to_dict()},
            "runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> list[dict]:
    """Per (backend, precision), in first-seen order: how many seeds reached the target,
    the mean training seconds to it over those that did, and the mean final accuracy."""
    variants_seen = list(dict.fromkeys((r["backend"], r["precision"]) for r in runs))
    summary = []
    for backend, precision in variants_seen:
        mine = [r for r in runs if (r["backend"], r["precision"]) == (backend, precision)]
        reached = [r["reached_target"]["train_seconds"] for r in mine if r["reached_target"]]
        summary.append({"backend": backend, "precision": precision, "seeds": len(mine),
                        "reached": len(reached),
                        "mean_seconds_to_target": (sum(reached) / len(reached)
                                                   if reached else None),
                        "mean_final_test_accuracy": sum(r["final_test_accuracy"]
                                                        for r in mine) / len(mine)})
    return summary

def markdown(result: dict) -> list[str]:
    """The section of bench.md: one row per run, then the mean time to the target."""
    model, train = result["recipe"]["model"], result["recipe"]["train"]
    shift = result["recipe"]["data"]["augment_shift"]
    lines = [f"## Tuned LSTM({model['hidden_size']}) on row-MNIST: time to "
             f"{100 * result['target']:.1f}% test accuracy", "",
             f"LSTM({model['hidden_size']}), dropout {model['dropout']:g}, random shifts up to "
             f"{shift} px, Adam {train['lr']:g}, cosine over the run, clip {train['clip']}, "
             f"batch {train['batch_size']}; test accuracy "
             "after each epoch (not timed); training seconds include compiling and auto's "
             "timing.", "",
             "| backend (resolved) | precision | seed | epochs | reached target at | "
             "final test accuracy | training seconds |", "|---|---|---:|---:|---|---:|---:|"]
    for r in result["runs"]:
        reached = r["reached_target"]
        when = (f"epoch {reached['epoch']}, {reached['train_seconds']:.0f}s" if reached
                else "not reached")
        lines.append(f"| {r['backend']} ({r['resolved']}) | {r['precision']} | {r['seed']} | "
                     f"{r['epochs']} | {when} | {100 * r['final_test_accuracy']:.2f}% | "
                     f"{r['rows'][-1]['train_seconds']:.0f} |")
    lines += ["", "| backend | precision | seeds reaching the target | mean seconds to it | "
              "mean final test accuracy |", "|---|---|---:|---:|---:|"]
    for s in result.get("summary", []):
        mean = s["mean_seconds_to_target"]
        lines.append(f"| {s['backend']} | {s['precision']} | {s['reached']} of {s['seeds']} | "
                     f"{'–' if mean is None else f'{mean:.1f}'} | "
                     f"{100 * s['mean_final_test_accuracy']:.2f}% |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of each run")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"),
                        help="folder for accuracy.md and accuracy.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as training runs do
    result = run(args.epochs, tuple(args.seeds),
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    result["cpu"] = cpu_model()
    result["threads"] = args.threads
    header = f"CPU: {result['cpu']}, {args.threads} threads, torch {torch.__version__}."
    text = "\n".join([header, "", *markdown(result)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "accuracy.md", text)
    atomic_write_text(out / "accuracy.json", json.dumps(result, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
