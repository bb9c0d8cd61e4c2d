"""Run folders made before the redesign (by rnnlab 0.1.0 at commit 93011b1, with
``rnnlab train TASK --dry-run``; stored in tests/data/pre-redesign without figures)
still load, evaluate to the numbers they recorded, predict, and resume-check."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnlab
from rnnlab.cli import main

torch.set_num_threads(1)
OLD = Path(__file__).parent / "data" / "pre-redesign"


@pytest.fixture
def old_runs(tmp_path) -> Path:
    """A copy: evaluating or predicting must not need to write, but a test may."""
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old"


@pytest.mark.parametrize("task", ["recall", "addition"])
def test_an_old_run_evaluates_to_the_numbers_it_recorded(old_runs, task):
    run = rnnlab.load(old_runs / task)
    recorded = run.summary["test"]
    evaluated = run.evaluate()
    assert evaluated["accuracy"] == recorded["accuracy"]
    assert evaluated["loss"] == pytest.approx(recorded["loss"], rel=1e-6)
    assert run.config["task"] == task and len(run.metrics) == 1


def test_old_runs_predict(old_runs, fake_mnist):
    assert rnnlab.load(old_runs / "recall").predict([3, 1, 4, 1, 5]).label in range(10)
    assert rnnlab.load(old_runs / "addition").predict("1011", "0110").record["true_sum_decimal"] \
        == "17"
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    assert rnnlab.load(old_runs / "mnist").predict(digit).label in range(10)


def test_old_runs_through_the_command_line(old_runs, fake_mnist, capsys):
    for task in ("recall", "addition", "mnist"):
        assert main(["evaluate", str(old_runs / task), "--json"]) == 0, task
    assert main(["predict", str(old_runs / "recall"), "3", "1", "4"]) == 0


def test_the_same_command_resumes_an_old_run_as_finished(old_runs, capsys):
    """The old ``train recall --dry-run --hidden 4`` run matches today's plan of the same
    command, so ``--resume`` finds it finished instead of refusing or retraining it."""
    sweep = old_runs / "sweep"
    shutil.copytree(old_runs / "recall", sweep / "hidden-4")
    before = (sweep / "hidden-4" / "metrics.csv").read_bytes()
    assert main(["train", "recall", "--dry-run", "--quiet", "--hidden", "4", "--resume",
                 "--no-figures", "--out", str(sweep), "--threads", "1"]) == 0
    assert "test accuracy 12.50% on 200 sequences" in capsys.readouterr().out
    assert (sweep / "hidden-4" / "metrics.csv").read_bytes() == before


def test_precision_auto_resumes_a_run_in_the_precision_it_began_in(tmp_path, capsys):
    """A run made in bf16 (named) is found again by a command that leaves the precision at
    auto: resumed, not refused, and its config is unchanged."""
    args = ["train", "recall", "--quiet", "--hidden", "4", "--no-figures", "--threads", "1",
            "--out", str(tmp_path / "run"), "--train-size", "20", "--valid-size", "20",
            "--test-size", "20", "--batch-size", "10"]
    assert main([*args, "--epochs", "1", "--precision", "bf16"]) == 0
    run = tmp_path / "run" / "hidden-4"
    config = (run / "config.json").read_text()
    assert main([*args, "--epochs", "1", "--resume"]) == 0  # finished: found, not refused
    assert (run / "config.json").read_text() == config
    summary = rnnlab.load(run).summary
    assert summary["backend"]["precision"] == "bf16"
