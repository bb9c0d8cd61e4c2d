"""Training throughput at 1 and 2 torch threads, on an idle machine and with one core
kept busy by another process (a Python busy loop): the measurement behind the
``--threads`` default.

Each measurement runs in a fresh process (``python -m bench.threads --one N BACKEND``)
so compiled kernels are built for the thread count they run with. The workload is
rnnlab's trainer on LSTM(100), batch 500, row-MNIST shapes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

BUSY_LOOP = "while True: pass"


def one(threads: int, backend: str, seconds: float) -> dict:
    """Sequences per second of rnnlab's trainer in this process."""
    from bench.throughput import BATCH, mnist_train
    from rnnlab.core.backends import use_backend
    from rnnlab.core.models import ModelConfig, SequenceClassifier
    from rnnlab.core.train import (
        ClassificationObjective,
        ShuffledBatches,
        TensorDataset,
        train_one_epoch,
    )

    torch.set_num_threads(threads)
    data = mnist_train(10_000)
    dataset = TensorDataset((torch.from_numpy(data.images).float() / 255.0 - 0.1307) / 0.3081,
                            torch.from_numpy(data.labels))
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=100))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_backend(model, backend, "fp32", log=lambda _m: None)
    stream = itertools.chain.from_iterable(ShuffledBatches(dataset, BATCH, 0).epoch_batches(e)
                                           for e in itertools.count(1))
    objective = ClassificationObjective()
    # warm-up (and compile)
    train_one_epoch(model, itertools.islice(stream, 3), objective, optimizer)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        train_one_epoch(model, itertools.islice(stream, 2), objective, optimizer)
        done += 2 * BATCH
    return {"threads": threads, "backend": backend,
            "seq_per_s": done / (time.perf_counter() - started)}


def spawn(threads: int, backend: str, seconds: float) -> dict:
    root = Path(__file__).resolve().parents[1]  # the repository root: bench importable
    out = subprocess.run([sys.executable, "-m", "bench.threads", "--one", str(threads), backend,
                          "--seconds", str(seconds)], capture_output=True, text=True, check=True,
                         cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(backends=("stock", "compiled"), seconds: float = 6.0, log=print) -> dict:
    """Every (backend, threads) pair, idle and with one core busy."""
    rows = []
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
        try:
            for backend in backends:
                for threads in (1, 2):
                    row = spawn(threads, backend, seconds)
                    row["busy_core"] = busy
                    rows.append(row)
                    log(f"bench: threads {threads}, {backend}, "
                        f"{'one core busy' if busy else 'idle'}: {row['seq_per_s']:,.0f} seq/s")
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return {"workload": "rnnlab trainer, LSTM(100), batch 500, fp32", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("THREADS", "BACKEND"), required=True)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    print(json.dumps(one(int(args.one[0]), args.one[1], args.seconds)))


if __name__ == "__main__":
    main()
