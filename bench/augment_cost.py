"""What the robust augmentation costs a training epoch of the tuned row-MNIST LSTM.

One model (LSTM(128), dropout 0.1, the tuned recipe's optimiser, the default backend)
trains epochs in turn on the tuned recipe's batches (random shifts up to 2 px) and on the
robust recipe's (tasks/mnist/augment.py), so load from other processes falls on both
alike; after one untimed epoch (compiling), each epoch is timed, and so is making one
epoch's batches alone. Prints the median and fastest seconds of each and their ratios
(the fastest is the one least disturbed by other processes).

    python bench/augment_cost.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnlab.core.backends import use_backend
from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.train import (
    ClassificationObjective,
    TrainConfig,
    make_optimizer,
    make_scheduler,
    set_seed,
    train_one_epoch,
)
from rnnlab.tasks.mnist import MnistTask
from rnnlab.tasks.mnist.data import MnistConfig, data_root_of, load_splits

RECIPES = {"tuned (shift 2 px)": MnistConfig(augment_shift=2),
           "robust": MnistConfig(augment="robust")}


def run(rounds: int) -> dict[str, dict[str, list[float]]]:
    train = TrainConfig(epochs=2 * rounds + 1, batch_size=128, lr=3e-3, schedule="onecycle",
                        clip=1.0, seed=2111)
    splits = load_splits(MnistConfig(), train.seed, data_root_of(None))
    set_seed(train.seed)
    model = SequenceClassifier(ModelConfig(cell="lstm", input_size=28, hidden_size=128,
                                           dropout=0.1))
    sources = {name: MnistTask(cfg).training_data(splits, train).train
               for name, cfg in RECIPES.items()}
    optimizer = make_optimizer(model, train)
    steps = train.epochs * next(iter(sources.values())).num_batches()
    scheduler = make_scheduler(optimizer, train, steps)
    use_backend(model, train.backend, train.precision, train_steps=steps, log=lambda _m: None)
    times: dict[str, dict[str, list[float]]] = {n: {"epoch": [], "batches": []} for n in sources}
    warm_up = next(iter(sources.values())).epoch_batches(0)  # compiling, caches: not timed
    train_one_epoch(model, warm_up, ClassificationObjective(), optimizer, scheduler, train.clip)
    for epoch in range(1, rounds + 1):
        for name, source in sources.items():
            started = time.perf_counter()
            train_one_epoch(model, source.epoch_batches(epoch), ClassificationObjective(),
                            optimizer, scheduler, train.clip)
            times[name]["epoch"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in source.epoch_batches(epoch):
                pass
            times[name]["batches"].append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="epochs of each recipe")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    times = run(args.rounds)
    for name, t in times.items():
        print(f"{name}: epoch median {statistics.median(t['epoch']):.2f}s, fastest "
              f"{min(t['epoch']):.2f}s (each: {', '.join(f'{s:.2f}' for s in t['epoch'])}); "
              f"its batches alone: median {statistics.median(t['batches']):.2f}s")
    plain, robust = (times[name]["epoch"] for name in RECIPES)
    print(f"robust / tuned epoch: median {statistics.median(robust) / statistics.median(plain):.3f}"
          f", fastest {min(robust) / min(plain):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
