"""Pixel-MNIST (sMNIST) and psMNIST: the pixel order, the recorded permutation, and the
commands end to end on the fake MNIST of tests/fakes.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rnnlab.cli import main
from rnnlab.core.data import load_dataset
from rnnlab.core.errors import ConfigError, InputError
from rnnlab.core.records import RunRecord
from rnnlab.tasks.base import PredictOptions
from rnnlab.tasks.mnist import MnistTask, read_image
from rnnlab.tasks.mnist.data import MnistConfig, normalise
from rnnlab.tasks.pixel_mnist import PERMUTATION_FILE, PixelMnistTask, PixelReader
from rnnlab.tasks.pixel_mnist.data import (
    STEPS,
    PixelMnistConfig,
    permutation,
    pixel_sequences,
)
from rnnlab.tasks.registry import REGISTRY

FIRST_OF_SEED_0 = [463, 396, 132, 417, 286, 681, 562, 314]  # permutation(0)[:8], pinned


@pytest.fixture
def registered(monkeypatch):
    """The task in the registry (by hand while the registry refuses hyphenated names)."""
    if PixelMnistTask.name not in REGISTRY.names():
        monkeypatch.setitem(REGISTRY.classes, PixelMnistTask.name, PixelMnistTask)


def numbered_images(n: int = 3) -> torch.Tensor:
    return torch.arange(n * STEPS, dtype=torch.float32).reshape(n, 28, 28)  # pixel = its number


# -- the pixel order ------------------------------------------------------------------
def test_row_major_order_one_pixel_a_step():
    images = numbered_images()
    x = pixel_sequences(images, None)
    assert x.shape == (3, STEPS, 1)
    for n, row, column in ((0, 0, 0), (1, 0, 27), (2, 1, 0), (2, 27, 27), (1, 13, 5)):
        assert x[n, 28 * row + column, 0] == images[n, row, column]
    assert torch.equal(x[:, :, 0], images.reshape(3, -1))


def test_the_permutation_is_a_permutation_fixed_by_its_seed():
    order = permutation(0)
    assert sorted(order) == list(range(STEPS)) and order != list(range(STEPS))
    assert order[:8] == FIRST_OF_SEED_0  # the same on every machine and library version
    assert permutation(0) == order and permutation(1) != order
    assert PixelMnistConfig(permute=True, permutation_seed=1).order() == permutation(1)
    assert PixelMnistConfig(permutation_seed=1).order() is None  # only used with permute
    images = numbered_images()
    x = pixel_sequences(images, order)
    assert x.shape == (3, STEPS, 1)
    for t in (0, 1, 100, STEPS - 1):
        assert torch.equal(x[:, t, 0], images.reshape(3, -1)[:, order[t]])


@pytest.mark.parametrize("permute", [False, True], ids=["smnist", "psmnist"])
def test_sets_are_mnists_images_read_in_the_pixel_order(fake_mnist, permute):
    config = PixelMnistConfig(permute=permute, permutation_seed=7, limit=50)
    sets = PixelMnistTask(config).load_sets(2111, None)
    rows = MnistTask(MnistConfig(limit=50)).load_sets(2111, None)
    for pixels, images in ((sets.train, rows.train), (sets.valid, rows.valid),
                           (sets.test, rows.test)):
        assert pixels.x.shape == (50, STEPS, 1) and torch.equal(pixels.y, images.y)
        flat = images.x.reshape(50, STEPS)
        expected = flat[:, permutation(7)] if permute else flat
        assert torch.equal(pixels.x[:, :, 0], expected)


class Spy(nn.Module):
    """A classifier that records what it is fed and says 'uniform'."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, lengths=None):
        self.seen.append(x.clone())
        return torch.zeros(x.shape[0], 10)


def test_predict_feeds_images_in_the_training_order(fake_mnist):
    task = PixelMnistTask(PixelMnistConfig(permute=True, permutation_seed=3, limit=20))
    raw = load_dataset("mnist").test_images[:4].numpy()
    spy = Spy()
    predictions = list(task.predict(spy, list(raw), PredictOptions()))
    assert len(predictions) == 4 and len(spy.seen) == 1
    read = np.stack([read_image("x", image, "mnist") for image in raw])
    expected = pixel_sequences(normalise(torch.from_numpy(read), "mnist"), permutation(3))
    assert torch.equal(spy.seen[0], expected)
    # the reader predict uses gives the test set's sequences from the test set's images
    sets = task.load_sets(2111, None)
    PixelReader(spy, task.order())(normalise(torch.from_numpy(raw), "mnist"))
    assert torch.equal(spy.seen[1], sets.test.x[:4])


# -- settings and the study ------------------------------------------------------------
@pytest.mark.parametrize("values", [{"permutation_seed": -1}, {"permutation_seed": 1.5},
                                    {"permutation_seed": True}, {"permute": "yes"},
                                    {"augment_shift": 2}, {"limit": 0}])
def test_bad_settings_are_config_errors(values):
    with pytest.raises(ConfigError):
        PixelMnistTask.from_dict(values)


def test_experiments_only_in_the_long_range_recipes_profile():
    assert PixelMnistTask.experiments("reference", (2111,), True) == []
    assert PixelMnistTask.experiments("long-range", (2111,), True) == []
    found = PixelMnistTask.experiments("long-range-recipes", (2111, 1), False)
    assert [e.name for e in found] == ["lstm", "lstm-permuted", "lem", "lem-permuted"]
    plain, permuted, lem, _ = found
    assert (plain.reference, permuted.reference, lem.reference) == (98.9, 95.1, 99.5)
    assert lem.model.cell == "lem" and lem.seeds == (2111,)
    assert (plain.task_config["permute"], permuted.task_config["permute"]) == (False, True)
    assert plain.model.cell == "lstm" and plain.model.hidden_size == 128
    assert plain.model.input_size == 1 and plain.task == PixelMnistTask.name


# -- the commands ----------------------------------------------------------------------
def one_line_error(argv: list[str], capsys) -> str:
    """A library error returns 2; a value argparse cannot read exits 2 (both one line)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("flags,problem", [(["--permutation-seed", "abc"], "invalid int"),
                                           (["--permutation-seed", "-3"], "--permutation-seed"),
                                           (["--limit", "0"], "--limit"),
                                           (["--dataset", "cifar"], "invalid choice")])
def test_bad_options_are_one_line(registered, fake_mnist, tmp_path, capsys, flags, problem):
    argv = ["train", "pixel-mnist", "--permute", *flags, "--dry-run", "--quiet",
            "--out", str(tmp_path / "run")]
    assert problem in one_line_error(argv, capsys)


@pytest.mark.parametrize("permute", [False, True], ids=["smnist", "psmnist"])
def test_dry_run_train_evaluate_predict(registered, fake_mnist, tmp_path, capsys, permute):
    out = tmp_path / "run"
    flags = ["--permute", "--permutation-seed", "5"] if permute else []
    assert main(["train", "pixel-mnist", *flags, "--dry-run", "--hidden", "8",
                 "--batch-size", "64", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    record = RunRecord.open(out)
    config = record.config()
    assert record.is_complete and config["model"]["input_size"] == 1
    assert config["task_config"]["permute"] is permute
    recorded = json.loads((out / PERMUTATION_FILE).read_text())
    assert recorded["order"] == (permutation(5) if permute else list(range(STEPS)))
    assert REGISTRY.of_config(config).order() == (permutation(5) if permute else None)
    assert (out / "figures" / "confusion_matrix.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--dry-run"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert abs(metrics["accuracy"] - record.summary()["test"]["accuracy"]) < 1e-9
    image = tmp_path / "digit.png"
    Image.fromarray(load_dataset("mnist").test_images[0].numpy()).save(image)
    assert main(["predict", str(out), str(image), "--json", "--quiet"]) == 0
    predicted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert predicted["file"] == str(image) and 0 <= predicted["prediction"] <= 9


def test_a_row_model_is_refused_for_pixel_prediction(tmp_path):
    task = PixelMnistTask()
    row_model = {"model_kind": "classifier", "model_config": {"input_size": 28, "num_outputs": 10}}
    with pytest.raises(InputError, match="not a pixel-sequence model"):
        task.check_model(RunRecord(tmp_path), row_model)
    task.check_model(RunRecord(tmp_path), {"model_kind": "classifier",
                                           "model_config": {"input_size": 1, "num_outputs": 10}})
