"""kill -9 a training run, resume it, and compare with a run that was never interrupted.

The runs go through the real command line (``python -m rnnlab train recall``) on a
tiny generated task, so a test costs two process starts. The uninterrupted run is
trained in this process with the same flags and one thread: the comparison also
checks that a fresh process reproduces it bit for bit.

``bench/kill_resume_repeat.py`` repeats :func:`kill_and_resume` many times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main

HIDDEN = 6
EPOCHS = 3
# Two stacked layers with dropout, AdamW, a one-cycle schedule and clipping: every
# piece of state a resume must restore (weights, optimizer moments, scheduler step,
# the dropout RNG, the data order) changes from batch to batch.
TRAIN_ARGS = [
    "train", "recall", "--hidden", str(HIDDEN), "--layers", "2", "--dropout", "0.25",
    "--train-size", "120", "--valid-size", "40", "--test-size", "40", "--batch-size", "2",
    "--epochs", str(EPOCHS), "--lr", "0.01", "--optimizer", "adamw", "--schedule", "onecycle",
    "--clip", "0.5", "--seed", "5", "--threads", "1", "--no-figures",
]
# Files that must be byte-identical; timing.csv and summary.json hold wall-clock times.
SAME_BYTES = ("config.json", "metrics.csv", "metrics.jsonl", "test_predictions.csv",
              "examples.json")
CHILD_TIMEOUT_S = 120


def run_folder(out: Path) -> Path:
    return out / f"hidden-{HIDDEN}"


def train_in_process(out: Path) -> Path:
    torch.set_num_threads(1)
    assert main([*TRAIN_ARGS, "--out", str(out), "--quiet"]) == 0
    return run_folder(out)


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_child(out: Path, *extra: str, bootstrap: str | None = None) -> subprocess.Popen:
    """``python -m rnnlab train ...`` (or the same via ``bootstrap`` code that patches first)."""
    argv = [*TRAIN_ARGS, "--out", str(out), *extra]
    prefix = ["-m", "rnnlab"] if bootstrap is None else ["-c", bootstrap]
    log = (out.parent / f"{out.name}.log").open("ab")
    return subprocess.Popen([sys.executable, *prefix, *argv], stdout=log, stderr=subprocess.STDOUT,
                            env=child_env())


def wait_for_rows(run: Path, rows: int, child: subprocess.Popen) -> list[dict]:
    """Poll metrics.jsonl (rewritten atomically) until it holds ``rows`` epochs."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    path = run / "metrics.jsonl"
    while time.monotonic() < deadline:
        if path.is_file():
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if len(lines) >= rows:
                return lines
        if child.poll() is not None:
            raise AssertionError(f"training ended (rc {child.returncode}) before epoch {rows}")
        time.sleep(0.005)
    child.kill()
    raise AssertionError(f"no epoch {rows} within {CHILD_TIMEOUT_S}s")


def first_epoch_seconds(run: Path) -> float:
    """The run's epoch 1 wall time, from timing.csv (written just after metrics.jsonl)."""
    path, deadline = run / "timing.csv", time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.is_file() else []
        if len(lines) >= 2:
            return float(lines[1].split(",")[1])
        time.sleep(0.002)
    raise AssertionError(f"no {path}")


def resume(out: Path) -> None:
    child = start_child(out, "--resume", "--quiet")
    assert child.wait(CHILD_TIMEOUT_S) == 0, (out.parent / f"{out.name}.log").read_text()[-2000:]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a, b, where: str = "") -> None:
    """Recursive equality of checkpoint contents: tensors bit for bit, the rest with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_same_state(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(reference: Path, resumed: Path) -> None:
    for name in SAME_BYTES:
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    ref_last = load(reference / "checkpoints/last.pt")
    new_last = load(resumed / "checkpoints/last.pt")
    for key in ("state_dict", "optimizer", "scheduler", "torch_rng", "epoch"):
        assert_same_state(ref_last[key], new_last[key], key)
    ref_fit, new_fit = ref_last["fit_state"], new_last["fit_state"]
    assert_same_state({k: v for k, v in ref_fit.items() if k != "timings"},
                      {k: v for k, v in new_fit.items() if k != "timings"}, "fit_state")
    assert_same_state(load(reference / "checkpoints/best.pt"),
                      load(resumed / "checkpoints/best.pt"), "best")
    ref_summary = json.loads((reference / "summary.json").read_text())
    new_summary = json.loads((resumed / "summary.json").read_text())
    for key in ("test", "test_last_epoch", "best_epoch", "epochs", "best_valid_accuracy",
                "parameters"):
        assert new_summary[key] == ref_summary[key], key
    assert not list(resumed.rglob("*.tmp")), "a temp file of an interrupted write was left behind"


def kill_and_resume(reference: Path, out: Path, fraction: float = 0.5) -> dict:
    """Start training, kill -9 it ``fraction`` of an epoch after epoch 1 ended, resume, compare.

    ``reference`` is the folder of the same run, never interrupted.

    Returns what happened (for the repeat bench); raises AssertionError on any difference.
    """
    child = start_child(out)
    run = run_folder(out)
    try:
        wait_for_rows(run, 1, child)
        time.sleep(fraction * first_epoch_seconds(run))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    rows_at_kill = len((run / "metrics.jsonl").read_text().splitlines())
    last_epoch = load(run / "checkpoints/last.pt")["epoch"]
    assert not (run / "summary.json").exists() and rows_at_kill < EPOCHS, "killed too late"
    assert last_epoch in (rows_at_kill - 1, rows_at_kill)
    resume(out)
    assert_same_run(reference, run)
    return {"rows_at_kill": rows_at_kill, "last_checkpoint_epoch": last_epoch}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return train_in_process(tmp_path_factory.mktemp("uninterrupted") / "out")


def test_kill_9_mid_epoch_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
    kill_and_resume(reference, tmp_path / "out")


# Run in the child instead of ``python -m rnnlab``: the second time last.pt is written,
# write half of its bytes to the temp file, then kill -9 the process.
KILL_DURING_WRITE = """
import io, os, signal, sys, torch
real_save, calls = torch.save, []

def save_then_die(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and "optimizer" in obj:  # only last.pt holds the optimizer
        calls.append(obj["epoch"])
        if len(calls) == 2:
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

torch.save = save_then_die
from rnnlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(reference, tmp_path):
    out = tmp_path / "out"
    child = start_child(out, bootstrap=KILL_DURING_WRITE)
    assert child.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL
    run = run_folder(out)
    temps = list((run / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the half-written file
    assert load(run / "checkpoints/last.pt")["epoch"] == 1  # the previous good one, whole
    metrics_lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [r["epoch"] for r in map(json.loads, metrics_lines)] == [1, 2]
    # here: one process less
    assert main([*TRAIN_ARGS, "--out", str(out), "--quiet", "--resume"]) == 0
    assert_same_run(reference, run)
