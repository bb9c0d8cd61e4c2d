"""Row-MNIST accuracy against time with rnnlab's tuned LSTM recipe.

The recipe: LSTM(128), Adam 5e-3 with cosine decay over the run, gradient norm
clipped to 1, batch 256, seed 2111, the 50,000 / 10,000 train / validation split.
Test accuracy is computed after every epoch (outside the timed training), and the
time at which it first reaches 98.5% is reported; each run still finishes its
schedule so its final accuracy can be compared across backends and precisions.
"""

from __future__ import annotations

import time

import torch

from rnnlab.core.backends import use_backend
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

TARGET = 0.985
RECIPE_MODEL = ModelConfig(cell="lstm", hidden_size=128)


def recipe(epochs: int, backend: str, precision: str) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=256, lr=5e-3, schedule="cosine", clip=1.0,
                       seed=2111, backend=backend, precision=precision)


def train_recipe(epochs: int, backend: str = "auto", precision: str = "fp32", log=print) -> dict:
    """One run of the recipe; per-epoch test accuracy and cumulative training seconds."""
    cfg = recipe(epochs, backend, precision)
    splits = load_splits(MnistConfig(), cfg.seed, data_root_of(None))
    set_seed(cfg.seed)
    model = SequenceClassifier(RECIPE_MODEL)
    data = MnistTask(MnistConfig()).training_data(splits, cfg)
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
        log(f"bench: {backend} {precision} epoch {epoch}: test {100 * test['accuracy']:.2f}% "
            f"after {trained:.0f}s of training")
    resolved = runners[0].resolved if runners else "stock"
    return {"backend": backend, "resolved": resolved, "precision": precision, "epochs": epochs,
            "rows": rows, "final_test_accuracy": rows[-1]["test_accuracy"],
            "reached_target": reached, "threads": torch.get_num_threads()}


def run(epochs: int, variants=(("auto", "fp32"), ("auto", "bf16"), ("stock", "fp32")),
        log=print) -> dict:
    train = recipe(epochs, "auto", "fp32").to_dict()
    return {"target": TARGET, "recipe": {"model": RECIPE_MODEL.to_dict(), "train": train},
            "runs": [train_recipe(epochs, b, p, log) for b, p in variants]}

