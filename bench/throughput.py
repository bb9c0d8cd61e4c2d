"""Recurrent training and inference throughput on row-MNIST shapes (T=28, F=28).

For each model (RNN, LSTM, GRU, one- and bidirectional) and each way of training it:

- ``bare nn.*``: the module, a linear head on h_n, cross-entropy, Adam, on
  pre-made (500, 28, 28) batches: the floor any trainer can only add to;
- ``rnnlab <backend> <precision>``: ``rnnlab.core.train.train_one_epoch`` over
  ``ShuffledBatches`` of a ``TensorDataset`` (shuffled batch gathering included),
  with ``rnnlab.core.backends.use_backend``;
- ``reference pipeline``: the exercise's way: a per-sample ``Dataset`` turning a
  uint8 image into a normalised (28, 28) float tensor, a ``DataLoader`` at batch
  500, the bare training step.

Each method runs warm-up steps, then timed rounds taken in turns with the other
methods of the same model; the fastest round counts, so load from other processes
biases the ratios as little as it can. FLOPs count the matmuls only: forward
2*B*T*G*H*(F+H) per layer and direction, training 3x forward.

Also here: what ``--backend auto`` picks for each model, measured now
(:func:`auto_pick`), and the long-sequence table (:func:`long_sequences`): every
registered cell's default training path, time per time step at T=28 against T=784.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnlab.core.autotune import TuneCache, time_steps
from rnnlab.core.backends import (
    auto_choice,
    backend_record,
    matmul_gflops,
    train_gflop,
    use_backend,
)
from rnnlab.core.cells import CELLS, cell_names, get_cell
from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.train import (
    ClassificationObjective,
    ShuffledBatches,
    TensorDataset,
    evaluate,
    train_one_epoch,
)

BATCH = 500
EVAL_BATCH = 2000
MEAN, STD = 0.1307, 0.3081
MODELS = {  # name: (cell, hidden, bidirectional); the exercise's sizes
    "LSTM": ("lstm", 100, False), "GRU": ("gru", 128, False), "RNN": ("rnn", 128, False),
    "BiLSTM": ("lstm", 100, True), "BiGRU": ("gru", 128, True), "BiRNN": ("rnn", 128, True),
}
TRAINER_VARIANTS = (("stock", "fp32"), ("compiled", "fp32"), ("stock", "bf16"),
                    ("compiled", "bf16"))
AUTO_TRAIN_STEPS = 7 * 100  # the exercise's runs: 7 epochs of 50,000 images at batch 500
# the long-sequence table: row-MNIST (T=28, F=28) against pixel-MNIST (T=784, F=1) shapes
LONG_SHAPES = ((28, 28), (784, 1))
LONG_BATCH, LONG_HIDDEN = 128, 128
LONG_TRAIN_STEPS = 10_000  # a pixel-MNIST run's order: what auto weighs compile time against
LONG_TARGET = 1.5  # per-time-step cost at T=784 over that at T=28, at most


def quiet(_line: str) -> None:
    """A log that drops the library's progress lines (compile times)."""


@dataclass
class MnistArrays:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    real: bool  # False: random stand-ins (MNIST not fetched)


def mnist_train(limit: int = 20_000) -> MnistArrays:
    """The first ``limit`` MNIST training images, or random ones of the same shape."""
    try:
        from rnnlab.core.data import load_dataset

        arrays = load_dataset("mnist")
        images = np.asarray(arrays.train_images[:limit])
        labels = np.asarray(arrays.train_labels[:limit])
        return MnistArrays(images.astype(np.uint8), labels.astype(np.int64), True)
    except Exception:  # any failure to load: measure on stand-ins
        rng = np.random.default_rng(0)
        return MnistArrays(rng.integers(0, 256, (limit, 28, 28), dtype=np.uint8),
                           rng.integers(0, 10, limit), False)


def ceiling(threads: int, seconds: float) -> dict:
    """The machine's matmul rate in GFLOP/s, float32 and bfloat16, at ``threads``."""
    torch.set_num_threads(threads)
    return {"threads": threads, "fp32": matmul_gflops(torch.float32, 2048, seconds),
            "bf16": matmul_gflops(torch.bfloat16, 2048, seconds)}


# -- the three ways of training -------------------------------------------------------
class BareModel(nn.Module):
    """``nn.*`` and a linear head on h_n: what every trainer here computes."""

    def __init__(self, cell: str, hidden: int, bidirectional: bool):
        super().__init__()
        self.rnn = CELLS[cell].module(
            28, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 10)

    def forward(self, x):
        _, h_n = self.rnn(x)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # (D, B, H)
        return self.head(torch.cat(list(h_n), dim=-1))


def bare_step(model: nn.Module, optimizer, x, y) -> None:
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class ReferenceDataset(torch.utils.data.Dataset):
    """The exercise's per-sample pipeline: uint8 (28, 28) -> normalised float (28, 28)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = torch.tensor(self.images[i], dtype=torch.float32) / 255.0
        return (x - MEAN) / STD, int(self.labels[i])


@dataclass
class Method:
    name: str
    step: Callable[[int], int]  # runs n training steps, returns sequences done
    infer: Callable[[], int] | None = None  # one inference pass, returns sequences done
    compile_seconds: float = 0.0


def forever(make: Callable[[int], Iterator]) -> Iterator:
    return itertools.chain.from_iterable(make(epoch) for epoch in itertools.count(1))


def normalised(data: MnistArrays) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 28, 28) float images normalised as the exercise does, and (N,) labels."""
    return (torch.from_numpy(data.images).float() / 255.0 - MEAN) / STD, \
        torch.from_numpy(data.labels)


def bare_method(cell: str, hidden: int, bi: bool, x_all: torch.Tensor,
                y_all: torch.Tensor) -> Method:
    """The bare loop: :class:`BareModel` and Adam on pre-made batches of ``x_all`` (N, 28,
    28, normalised) and ``y_all`` (N,)."""
    torch.manual_seed(0)
    bare = BareModel(cell, hidden, bi)
    bare_opt = torch.optim.Adam(bare.parameters(), lr=1e-3)
    batches = [(x_all[i : i + BATCH].contiguous(), y_all[i : i + BATCH])
               for i in range(0, len(x_all) - BATCH + 1, BATCH)]
    eval_x = x_all[:EVAL_BATCH].contiguous()

    def bare_steps(n: int) -> int:
        bare.train()
        for k in range(n):
            bare_step(bare, bare_opt, *batches[(bare_steps.at + k) % len(batches)])
        bare_steps.at += n
        return n * BATCH

    bare_steps.at = 0

    @torch.no_grad()
    def bare_infer() -> int:
        bare.eval()
        bare(eval_x)
        return EVAL_BATCH

    return Method("bare nn.*", bare_steps, bare_infer)


def make_methods(cell: str, hidden: int, bi: bool, data: MnistArrays, variants,
                 reference: bool) -> list[Method]:
    x_all, y_all = normalised(data)
    methods = [bare_method(cell, hidden, bi, x_all, y_all)]
    dataset = TensorDataset(x_all, y_all)
    objective = ClassificationObjective()
    eval_batches = [dataset.batch(slice(0, EVAL_BATCH))]
    for backend, precision in variants:
        torch.manual_seed(0)
        model = SequenceClassifier(ModelConfig(cell=cell, hidden_size=hidden, bidirectional=bi))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        use_backend(model, backend, precision, log=lambda _m: None)
        stream = forever(ShuffledBatches(dataset, BATCH, seed=0).epoch_batches)

        def steps(n: int, model=model, optimizer=optimizer, stream=stream) -> int:
            train_one_epoch(model, itertools.islice(stream, n), objective, optimizer)
            return n * BATCH

        def infer(model=model) -> int:
            evaluate(model, eval_batches, objective)
            return EVAL_BATCH

        started = time.perf_counter()
        steps(1)  # the first step compiles (compiled backend)
        method = Method(f"rnnlab {backend} {precision}", steps, infer,
                        time.perf_counter() - started)
        methods.append(method)

    if reference:
        torch.manual_seed(0)
        ref = BareModel(cell, hidden, bi)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
        loader = torch.utils.data.DataLoader(ReferenceDataset(data.images, data.labels),
                                             batch_size=BATCH, shuffle=True, drop_last=True)
        ref_stream = forever(lambda _e: iter(loader))

        def ref_steps(n: int) -> int:
            ref.train()
            for x, y in itertools.islice(ref_stream, n):
                bare_step(ref, ref_opt, x, y)
            return n * BATCH

        methods.append(Method("reference pipeline", ref_steps))
    return methods


def measure(methods: list[Method], steps: int, rounds: int) -> list[dict]:
    """Fastest of ``rounds`` timed rounds of ``steps`` training steps (and one inference
    pass), the methods taken in turns."""
    best_train = [math.inf] * len(methods)
    best_infer = [math.inf] * len(methods)
    for m in methods:  # warm-up
        m.step(2)
        if m.infer:
            m.infer()
    for _ in range(rounds):
        for i, m in enumerate(methods):
            started = time.perf_counter()
            done = m.step(steps)
            best_train[i] = min(best_train[i], (time.perf_counter() - started) / done)
            if m.infer:
                started = time.perf_counter()
                done = m.infer()
                best_infer[i] = min(best_infer[i], (time.perf_counter() - started) / done)
    return [{"method": m.name, "train_seq_per_s": 1 / t,
             "infer_seq_per_s": (1 / s if math.isfinite(s) else None),
             "compile_seconds": round(m.compile_seconds, 2)}
            for m, t, s in zip(methods, best_train, best_infer, strict=True)]


def run_models(names, threads: int, ceiling_gflops: dict, steps: int, rounds: int,
               variants=TRAINER_VARIANTS, reference: bool = True, log=print) -> list[dict]:
    torch.set_num_threads(threads)
    data = mnist_train()
    results = []
    for name in names:
        cell, hidden, bi = MODELS[name]
        started = time.perf_counter()
        rows = measure(make_methods(cell, hidden, bi, data, variants, reference), steps, rounds)
        # GFLOP per training sequence
        per_seq = train_gflop(cell, 1, 28, 28, hidden, 1, 2 if bi else 1)
        for row in rows:
            row["train_gflops"] = row["train_seq_per_s"] * per_seq
            precision = "bf16" if row["method"].endswith("bf16") else "fp32"
            row["train_share"] = row["train_gflops"] / ceiling_gflops[precision]
            row["train_share_fp32"] = row["train_gflops"] / ceiling_gflops["fp32"]
            if row["infer_seq_per_s"]:
                row["infer_gflops"] = row["infer_seq_per_s"] * per_seq / 3
                row["infer_share"] = row["infer_gflops"] / ceiling_gflops[precision]
        results.append({"model": name, "cell": cell, "hidden": hidden, "bidirectional": bi,
                        "mnist": data.real, "rows": rows, "seconds": time.perf_counter() - started})
        log(f"bench: {name} done in {time.perf_counter() - started:.0f}s")
    return results


# -- what auto picks, and its cost on long sequences ----------------------------------
def auto_pick(cell: str, hidden: int, bi: bool, cache: TuneCache,
              precision: str = "auto") -> dict:
    """What ``--backend auto`` picks for a 7-epoch, batch-500 row-MNIST run of this model,
    and why (the run record's ``backend`` entry), timed now unless ``cache`` has it."""
    rnn = get_cell(cell).make(input_size=28, hidden_size=hidden, bidirectional=bi)
    choice = auto_choice(rnn, torch.empty(BATCH, 28, 28), AUTO_TRAIN_STEPS, precision,
                         log=quiet, cache=cache)
    return choice.record("auto")


def default_path_ms(cell: str, steps: int, features: int, cache: TuneCache) -> dict:
    """Milliseconds per time step of a training step (forward and backward, loss on the
    logits) of a classifier over (LONG_BATCH, steps, features) on the default path."""
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell=cell, input_size=features,
                                           hidden_size=LONG_HIDDEN))
    use_backend(model, "auto", "auto", train_steps=LONG_TRAIN_STEPS, log=quiet,
                tune_cache=cache)
    x = torch.randn(LONG_BATCH, steps, features)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    step()  # the first full-length training batch: auto decides here (times, compiles)
    ms = time_steps({"default": step})["default"]
    return {"ms_per_time_step": ms / steps, "backend": backend_record(model, "auto")}


def long_sequences(cells: tuple[str, ...] | None, cache: TuneCache, log=print) -> list[dict]:
    """For each cell, the default path's ms per time step at each of LONG_SHAPES."""
    rows = []
    for cell in cells or cell_names():
        started = time.perf_counter()
        found = {steps: default_path_ms(cell, steps, features, cache)
                 for steps, features in LONG_SHAPES}
        (short, _), (long, _) = LONG_SHAPES
        ratio = found[long]["ms_per_time_step"] / found[short]["ms_per_time_step"]
        rows.append({"cell": cell, "by_steps": found, "ratio": ratio,
                     "meets_target": ratio <= LONG_TARGET})
        log(f"bench: long sequences, {cell} done in {time.perf_counter() - started:.0f}s")
    return rows
