"""Determinism on CPU: the same command twice gives byte-identical records (docs/determinism.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnlab.cli import main

# Everything random at once: dropout between two layers, random shifts of the
# training images, a shuffled order, a one-cycle schedule and clipping.
MNIST = ["train", "mnist", "--dry-run", "--cell", "lstm", "--hidden", "8", "--layers", "2",
         "--dropout", "0.3", "--augment-shift", "2", "--schedule", "onecycle", "--clip", "1",
         "--batch-size", "100", "--threads", "1", "--quiet", "--no-figures"]
SAME_BYTES = ("config.json", "metrics.csv", "metrics.jsonl", "test_predictions.csv",
              "checkpoints/best.pt")


def assert_equal(a, b) -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_equal(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_equal(x, y)
    else:
        assert a == b


def train(out: Path, *extra: str) -> Path:
    assert main([*MNIST, "--out", str(out), *extra]) == 0
    return out


def test_same_command_twice_gives_identical_files(fake_mnist, tmp_path):
    a, b = train(tmp_path / "a"), train(tmp_path / "b")
    for name in SAME_BYTES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # last.pt also carries the epochs' wall-clock seconds (to rewrite timing.csv on resume)
    last_a, last_b = (torch.load(r / "checkpoints/last.pt", weights_only=True) for r in (a, b))
    assert last_a["fit_state"]["timings"] != last_b["fit_state"]["timings"]
    last_a["fit_state"]["timings"] = last_b["fit_state"]["timings"] = []
    assert_equal(last_a, last_b)
    # Wall-clock times are the only difference, and they live apart by design.
    assert (a / "timing.csv").is_file() and "seconds" in (a / "timing.csv").read_text()
    c = train(tmp_path / "c", "--seed", "7")
    assert (c / "metrics.csv").read_bytes() != (a / "metrics.csv").read_bytes()


def test_checkpoints_hold_no_absolute_path(fake_mnist, tmp_path):
    """A run folder can be moved or compared with another: no paths inside its checkpoints."""
    out = train(tmp_path / "run")
    for name in ("best", "last"):
        payload = torch.load(out / f"checkpoints/{name}.pt", weights_only=True)
        assert str(tmp_path) not in repr({k: v for k, v in payload.items() if k != "state_dict"})
