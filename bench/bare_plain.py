"""The bare ``nn.*`` training loop of bench/throughput.py in a plain Python process.

The suite's own process keeps freed memory (``rnnlab.core.memory.keep_freed_memory``), as
rnnlab's training runs do, so its "bare nn.*" rows run with that setting too. A user's
own script does not: this module measures the same loop with glibc's default allocator
settings, in a fresh process, for the "default / bare (plain process)" ratio.

``python -m bench.bare_plain --models LSTM GRU --threads 2 --steps 8 --rounds 4`` prints
one JSON object, {model: training sequences per second}; :func:`measure_models` runs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure_models(names: list[str], threads: int, steps: int, rounds: int) -> dict[str, float]:
    """{model: bare training seq/s}, measured in a fresh plain Python process."""
    command = [sys.executable, "-m", "bench.bare_plain", "--models", *names,
               "--threads", str(threads), "--steps", str(steps), "--rounds", str(rounds)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


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
