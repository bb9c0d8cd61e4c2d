"""Checkpoints are data, never code: every doubtful one is refused in one line, exit 2.

Each test copies a small trained MNIST run (fake data), spoils its best.pt one way
and runs ``rnnlab evaluate RUN`` (or ``predict``) through ``rnnlab.cli.main``.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rnnlab.cli import main
from rnnlab.core.errors import UserError
from rnnlab.core.records import CHECKPOINT_FORMAT, load_checkpoint_file

TRAIN = ["train", "mnist", "--dry-run", "--hidden", "6", "--batch-size", "250", "--threads", "1",
         "--quiet", "--no-figures"]


@pytest.fixture(scope="module")
def trained(fake_mnist_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--out", str(out), "--data-dir", str(fake_mnist_root)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A fresh copy of the trained run, to spoil."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def evaluate_error(run: Path, root: Path, capsys) -> str:
    """``rnnlab evaluate RUN``: must exit 2 with exactly one line on stderr; returns it."""
    capsys.readouterr()
    code = main(["evaluate", str(run), "--dry-run", "--data-dir", str(root)])
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), captured.err
    return lines[0]


def best(run: Path) -> Path:
    return run / "checkpoints" / "best.pt"


def payload(run: Path) -> dict:
    return torch.load(best(run), weights_only=True)


class RunsShell:
    """Pickles to a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Innocent:
    """A harmless class instance: still not weights, still refused."""

    value = 3


def test_the_unspoiled_copy_evaluates(run, fake_mnist_root, capsys):
    assert main(["evaluate", str(run), "--dry-run", "--data-dir", str(fake_mnist_root)]) == 0


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_pickled_call_is_refused_and_never_runs(run, fake_mnist_root, capsys, tmp_path, legacy):
    marker = tmp_path / "pwned"
    torch.save({**payload(run), "extra": RunsShell(marker)}, best(run),
               _use_new_zipfile_serialization=not legacy)
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "best.pt: it holds a pickled object (posix.system)" in err
    assert "never runs code" in err
    assert not marker.exists()


def test_a_class_instance_is_refused(run, fake_mnist_root, capsys):
    torch.save({**payload(run), "extra": Innocent()}, best(run))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "it holds a pickled object (test_safety_checkpoints.Innocent)" in err


def test_a_plain_pickle_with_a_call_is_refused(run, fake_mnist_root, capsys, tmp_path):
    marker = tmp_path / "pwned"
    best(run).write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": RunsShell(marker)}))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "best.pt is corrupt (not a weights-only pickle)" in err
    assert not marker.exists()


def test_a_wrong_tensor_shape_is_refused(run, fake_mnist_root, capsys):
    spoiled = payload(run)
    key = next(k for k in spoiled["state_dict"] if k.endswith("weight_ih_l0"))
    spoiled["state_dict"][key] = torch.zeros(3, 3)
    torch.save(spoiled, best(run))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "best.pt in" in err and "does not fit its model" in err and "size mismatch" in err


def test_missing_or_extra_weights_are_refused(run, fake_mnist_root, capsys):
    spoiled = payload(run)
    spoiled["state_dict"].popitem()
    spoiled["state_dict"]["surprise"] = torch.zeros(1)
    torch.save(spoiled, best(run))
    assert "does not fit its model" in evaluate_error(run, fake_mnist_root, capsys)


def test_a_checkpoint_of_another_model_config_is_refused(run, fake_mnist_root, capsys, tmp_path):
    other = tmp_path / "other"
    assert main([*TRAIN, "--hidden", "9", "--out", str(other),
                 "--data-dir", str(fake_mnist_root)]) == 0
    shutil.copy(best(other), best(run))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "checkpoint best.pt in" in err and "does not match the run's config.json" in err


def test_an_edited_config_json_is_refused(run, fake_mnist_root, capsys):
    config = (run / "config.json").read_text().replace('"hidden_size": 6', '"hidden_size": 7')
    (run / "config.json").write_text(config)
    assert "does not match the run's config.json" in evaluate_error(run, fake_mnist_root, capsys)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1], ids=["empty", "10-bytes", "half", "all-but-one"])
def test_a_truncated_checkpoint_is_refused(run, fake_mnist_root, capsys, keep):
    data = best(run).read_bytes()
    cut = {0.5: len(data) // 2, -1: len(data) - 1}.get(keep, keep)
    best(run).write_bytes(data[:cut])
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "best.pt is truncated or corrupt" in err or "best.pt is corrupt" in err
    assert "delete it and train again" in err


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused(run, fake_mnist_root, capsys, seed):
    best(run).write_bytes(np.random.default_rng(seed).bytes(2000 + 1000 * seed))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "corrupt" in err and "delete it and train again" in err


@pytest.mark.parametrize("content", [[1, 2, 3], {"state_dict": {}}, {"format": "other"}],
                         ids=["list", "no-format", "other-format"])
def test_weights_only_content_that_is_no_rnnlab_checkpoint_is_refused(run, fake_mnist_root, capsys,
                                                                      content):
    torch.save(content, best(run))
    assert "best.pt is not an rnnlab checkpoint" in evaluate_error(run, fake_mnist_root, capsys)


@pytest.mark.parametrize("change", [{"state_dict": [1, 2]},
                                    {"model_kind": "oracle"},
                                    {"state_dict": None}],
                         ids=["weights-a-list", "unknown-model-kind", "no-weights"])
def test_a_malformed_payload_is_refused(run, fake_mnist_root, capsys, change):
    torch.save({**payload(run), **change}, best(run))
    err = evaluate_error(run, fake_mnist_root, capsys)
    assert "best.pt" in err or "model kind" in err


def test_a_missing_checkpoint_is_one_line(run, fake_mnist_root, capsys):
    best(run).unlink()
    assert "best.pt is missing" in evaluate_error(run, fake_mnist_root, capsys)


def test_predict_refuses_a_malicious_checkpoint_too(run, capsys, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({**payload(run), "extra": RunsShell(marker)}, best(run))
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert main(["predict", str(run), str(image)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "holds a pickled object (posix.system)" in err[0]
    assert not marker.exists()


def test_the_loader_only_ever_raises_user_error_on_mutated_checkpoints(trained, tmp_path):
    """Byte flips, cuts and insertions anywhere in a real checkpoint: loaded or UserError."""
    data = (trained / "checkpoints" / "last.pt").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "m.pt"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            where = int(rng.integers(0, len(mutated)))
            kind = rng.integers(0, 3)
            if kind == 0:
                mutated[where] = int(rng.integers(0, 256))
            elif kind == 1:
                del mutated[where:]
                mutated += b"\0" if not mutated else b""
            else:
                mutated[where:where] = rng.bytes(int(rng.integers(1, 16)))
        path.write_bytes(bytes(mutated))
        try:
            load_checkpoint_file(path)
            outcomes["loaded"] += 1
        except UserError as err:
            assert "\n" not in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
