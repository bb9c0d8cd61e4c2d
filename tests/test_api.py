"""The Python API as the README shows it, for each of the three tasks: train, read the
records, predict with native values and with the command line's strings, evaluate,
load the folder again."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import rnnlab

torch.set_num_threads(1)


def check_run(run: rnnlab.Run, epochs: int) -> None:
    """What every finished run offers, checked against its own records."""
    assert len(run.metrics) == epochs and run.metrics[-1]["epoch"] == epochs
    assert isinstance(run.model, nn.Module) and not run.model.training
    again = rnnlab.load(run.path)
    assert again.summary == run.summary and again.config == run.config
    assert run.figures, "a run draws its figures unless told not to"


def test_the_task_list_names_the_builtin_tasks():
    assert rnnlab.tasks()[:3] == ["mnist", "recall", "addition"]


def test_recall_as_in_the_readme(tmp_path):
    run = rnnlab.train("recall", hidden=10, epochs=3, seed=1, out=tmp_path / "r10",
                       data="fresh", train_size=2000, batch_size=64, lr=0.01)
    check_run(run, epochs=3)
    assert run.config["model"]["hidden_size"] == 10 and run.config["train"]["seed"] == 1
    p = run.predict([3, 1, 4, 1, 5])
    assert p.label in range(10) and len(p.probabilities) == 10
    assert math.isclose(sum(p.probabilities), 1.0, rel_tol=1e-5)
    assert p.label == int(np.argmax(p.probabilities)) and p.text == str(p.label)
    assert run.predict("3 1 4 1 5").label == p.label == run.predict(3, 1, 4, 1, 5).label
    evaluated = run.evaluate()
    assert evaluated["accuracy"] == run.summary["test"]["accuracy"]
    assert evaluated["loss"] == pytest.approx(run.summary["test"]["loss"], rel=1e-6)


def test_addition_predicts_the_sum_from_strings_and_ints(tmp_path):
    run = rnnlab.train("addition", hidden=8, epochs=2, loss="bce", data="fresh", train_size=512,
                       batch_size=32, lr=0.02, train_lengths="1-8", eval_lengths="1-4",
                       eval_pairs=20, out=tmp_path / "add")
    check_run(run, epochs=2)
    p = run.predict("1011", "0110")
    assert p.record["true_sum_decimal"] == "17" and p.label == int(p.record["model_sum"], 2)
    assert p.probabilities is None and "(true sum)" in p.text
    from_ints = run.predict(11, 6)
    assert from_ints.record["true_sum_decimal"] == "17" and from_ints.label == p.label
    assert run.evaluate()["eval_lengths"] == "1-4"


def test_mnist_predicts_arrays_images_and_files(tmp_path, fake_mnist):
    run = rnnlab.train("mnist", cell="gru", hidden=16, epochs=1, dry_run=True, out=tmp_path / "m")
    check_run(run, epochs=1)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    from_array = run.predict(digit)
    Image.fromarray(digit).save(tmp_path / "one.png")
    from_file = run.predict(str(tmp_path / "one.png"))
    from_image = run.predict(Image.fromarray(digit))
    assert from_array.probabilities == pytest.approx(from_file.probabilities)
    assert from_image.label == from_file.label == from_array.label
    assert len(run.predict(digit, digit)) == 2
    as_floats = run.predict(digit.astype(np.float32) / 255)  # as matplotlib keeps images
    assert as_floats.probabilities == pytest.approx(from_array.probabilities)
    with pytest.raises(rnnlab.InputError, match="no such file"):
        run.predict(str(tmp_path / "missing.png"))


def test_out_none_trains_in_a_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = rnnlab.train("addition", epochs=1, dry_run=True)
    assert run.path.parent == tmp_path and run.path.name.startswith("rnnlab-addition-")
    assert run.summary["epochs"] == 1


def test_api_errors_are_typed_and_name_settings_not_flags(tmp_path):
    with pytest.raises(rnnlab.ConfigError, match=r"^hidden must be >= 1, got 0$"):
        rnnlab.train("recall", hidden=0, out=tmp_path / "x")
    with pytest.raises(rnnlab.ConfigError, match=r"^batch_size must be >= 1"):
        rnnlab.train("recall", batch_size=0, out=tmp_path / "x")
    with pytest.raises(rnnlab.ConfigError, match="is not a setting of the recall task"):
        rnnlab.train("recall", dataset="mnist", out=tmp_path / "x")
    with pytest.raises(rnnlab.ConfigError, match=r"^epochs must be an int, got '3'$"):
        rnnlab.train("recall", epochs="3", out=tmp_path / "x")
    with pytest.raises(rnnlab.ConfigError, match=r"^bidirectional must be a bool"):
        rnnlab.train("recall", bidirectional="yes", out=tmp_path / "x")
    with pytest.raises(rnnlab.UnknownNameError, match="choose one of mnist, recall, addition"):
        rnnlab.train("sorting")
    with pytest.raises(rnnlab.RunFolderError, match="not an rnnlab run folder"):
        rnnlab.load(tmp_path)
    assert not (tmp_path / "x").exists(), "a bad setting is refused before anything is written"


def test_a_folder_of_runs_names_the_runs_inside(tmp_path):
    from rnnlab.cli import main

    assert main(["train", "recall", "--dry-run", "--quiet", "--hidden", "2", "3", "--out",
                 str(tmp_path / "sweep"), "--no-figures", "--threads", "1"]) == 0
    with pytest.raises(rnnlab.RunFolderError, match="holds runs, not one run: choose one of") \
            as err:
        rnnlab.load(tmp_path / "sweep")
    assert "hidden-2" in str(err.value) and "hidden-3" in str(err.value)
    assert main(["evaluate", str(tmp_path / "sweep")]) == 2
