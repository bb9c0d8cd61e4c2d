"""The bare ``nn.*`` training loop of bench/throughput.py in a plain Python process.

The suite's own process keeps freed memory (``rnnlab.core.memory.keep_freed_memory``), as
rnnlab's training runs do, so its "bare nn.*" rows run with that setting too. A user's
own script does not: this module measures the same loop with glibc's default allocator
settings, in a fresh process, for the "default / bare (plain process)" ratio.

``python -m bench.bare_plain --models LSTM GRU --threads 2 --steps 8 --rounds 4`` prints
one JSON object, {model: training sequences per second}; :func:`measure_models` runs it
in several fresh processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


PROCESSES = 3  # fresh processes measured; the median counts


def measure_models(names: list[str], threads: int, steps: int, rounds: int,
                   processes: int = PROCESSES) -> dict[str, list[float]]:
    """{model: bare training seq/s in each of ``processes`` fresh plain Python processes}.
    One process is not enough: with glibc's default settings the same loop ran 10-30%
    faster or slower from one process to the next (which mmap threshold the allocator
    has climbed to by the timed rounds), so the median of several is the figure."""
    command = [sys.executable, "-m", "bench.bare_plain", "--models", *names,
               "--threads", str(threads), "--steps", str(steps), "--rounds", str(rounds)]
    found: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(processes):
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        for name, seq_per_s in json.loads(done.stdout.strip().splitlines()[-1]).items():
            found[name].append(seq_per_s)
    return found


def main(argv: list[str] | None = None) -> int:
    import torch  # here, so that measure_models's process imports nothing heavy

    from bench import throughput

    parser = argparse.ArgumentParser(prog="python -m bench.bare_plain",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(throughput.MODELS), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (the fastest counts)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x_all, y_all = throughput.normalised(throughput.mnist_train())
    result = {}
    for name in args.models:
        cell, hidden, bi = throughput.MODELS[name]
        row, = throughput.measure([throughput.bare_method(cell, hidden, bi, x_all, y_all)],
                                  args.steps, args.rounds)
        result[name] = row["train_seq_per_s"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
