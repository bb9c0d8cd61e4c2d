"""Repeat the kill test: kill -9 a training run at a random moment, resume it, and
compare with the uninterrupted run; print how many of the repeats matched.

Each repeat is :func:`kill_and_resume` of ``tests/test_resume_kill.py`` (the same
code the suite runs once): ``python -m rnnlab train recall ...`` is killed a
random fraction of an epoch after its first epoch ended (mid-epoch, or while it
writes metrics or checkpoints), ``--resume`` runs in a fresh process, and the
metrics, predictions, checkpoints (weights, optimizer, scheduler, RNG) and test
results must all equal the uninterrupted run's, bit for bit.

    python bench/kill_resume_repeat.py [--repeats 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_kill_test():
    spec = importlib.util.spec_from_file_location("test_resume_kill",
                                                  ROOT / "tests" / "test_resume_kill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="kill-and-resume rounds")
    parser.add_argument("--seed", type=int, default=0, help="seed for the moments of the kills")
    args = parser.parse_args(argv)
    kill_test = load_kill_test()
    moments = random.Random(args.seed)
    passed = 0
    with tempfile.TemporaryDirectory(prefix="rnnlab-kill-") as tmp:
        started = time.perf_counter()
        reference = kill_test.train_in_process(Path(tmp) / "reference")
        print(f"uninterrupted run: {time.perf_counter() - started:.1f}s", flush=True)
        for i in range(1, args.repeats + 1):
            fraction = moments.uniform(0.02, 0.98)
            started = time.perf_counter()
            try:
                what = kill_test.kill_and_resume(reference, Path(tmp) / f"run-{i}", fraction)
            except AssertionError:
                print(f"repeat {i:2d}: FAILED (kill at {fraction:.2f} of an epoch)", flush=True)
                traceback.print_exc(limit=2)
                continue
            passed += 1
            print(f"repeat {i:2d}: identical (kill at {fraction:.2f} of an epoch; "
                  f"{what['rows_at_kill']} epoch(s) logged, "
                  f"last.pt at epoch {what['last_checkpoint_epoch']}; "
                  f"{time.perf_counter() - started:.1f}s)", flush=True)
    print(f"kill -9 then --resume: {passed}/{args.repeats} identical to the uninterrupted run")
    return 0 if passed == args.repeats else 1


if __name__ == "__main__":
    sys.exit(main())
