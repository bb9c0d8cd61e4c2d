"""Every option is checked before any work starts: one line on stderr, exit code 2.

The data root is an empty temp folder (tests/conftest.py), so an MNIST command
that got as far as loading data would fail with "not found" instead of the
expected message: each passing case also shows the check came first. No run
folder may be created either.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rnnlab.cli import main


def one_line_error(argv: list[str], capsys) -> str:
    """Run ``rnnlab ARGV``; it must exit 2 with a single stderr line starting with ``rnnlab``."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse errors (types, choices) exit from the parser
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab"), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def check(task: str, options: list[str], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    err = one_line_error(["train", task, *options, "--out", str(out), "--quiet", "--no-figures"],
                         capsys)
    assert message in err, err
    assert not out.exists(), "the run folder was created before the options were checked"


TOO_BIG = str(2**32)
SHARED = [  # options every task shares (rnnlab/options.py): the model, optimisation, runtime
    (["--hidden", "0"], "--hidden must be >= 1, got 0"),
    (["--hidden", "-5"], "--hidden must be >= 1, got -5"),
    (["--hidden", "1000000"], "parameters, more than 1,073,741,824; choose a smaller size"),
    (["--layers", "0"], "--layers must be >= 1, got 0"),
    (["--layers", "100000", "--hidden", "10000"], "choose a smaller size or fewer layers"),
    (["--dropout", "-0.1"], "dropout must be in [0, 1), got -0.1"),
    (["--dropout", "1"], "dropout must be in [0, 1), got 1.0"),
    (["--dropout", "nan"], "dropout must be in [0, 1), got nan"),
    (["--epochs", "-1"], "epochs must be >= 0, got -1"),
    (["--batch-size", "0"], "batch-size must be >= 1, got 0"),
    (["--lr", "0"], "lr must be > 0, got 0.0"),
    (["--lr", "-0.01"], "lr must be > 0, got -0.01"),
    (["--lr", "nan"], "lr must be > 0, got nan"),
    (["--lr", "inf"], "lr must be > 0, got inf"),
    (["--weight-decay", "-1"], "weight-decay must be >= 0, got -1.0"),
    (["--weight-decay", "nan"], "weight-decay must be >= 0, got nan"),
    (["--clip", "0"], "clip must be > 0, got 0.0"),
    (["--clip", "-1"], "clip must be > 0, got -1.0"),
    (["--clip", "nan"], "clip must be > 0, got nan"),
    (["--seed", "-1"], "seed must be in 0..4294967295, got -1"),
    (["--seed", TOO_BIG], f"seed must be in 0..4294967295, got {TOO_BIG}"),
    (["--threads", "0"], "threads must be >= 1, got 0"),
    (["--threads", "-2"], "threads must be >= 1, got -2"),
    (["--stop-when", "mse<0.01"], "--stop-when 'mse<0.01' is not a rule like 'loss<0.01'"),
    (["--stop-when", "loss<1e999"], "--stop-when '1e999' is not a finite number"),
]
BAD_SYNTAX = [  # argparse's own errors, made one line by OneLineErrorParser
    (["--hidden", "abc"], "argument --hidden: invalid int value: 'abc'"),
    (["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--schedule", "step"], "argument --schedule: invalid choice: 'step'"),
    (["--hiden", "3"], "unrecognized arguments: --hiden 3"),
    (["--lr"], "argument --lr: expected one argument"),
]


def case_id(case) -> str:
    return " ".join(case[0])


@pytest.mark.parametrize("task", ["mnist", "recall", "addition"])
@pytest.mark.parametrize("case", SHARED + BAD_SYNTAX, ids=case_id)
def test_shared_options(task, case, tmp_path, capsys):
    check(task, *case, tmp_path, capsys)


MNIST = [
    (["--augment-shift", "-1"], "augment-shift must be in 0..8 pixels, got -1"),
    (["--augment-shift", "9"], "augment-shift must be in 0..8 pixels, got 9"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
]
RECALL = [
    (["--k", "3", "--min-length", "3"],
     "--k (3) is not a position of every sequence: it must be < min_length (3)"),
    (["--k", "5"], "--k (5) is not a position of every sequence"),
    (["--k", "-1"], "k must be >= 0 (positions are zero-based), got -1"),
    (["--min-length", "0", "--k", "0"], "min-length must be >= 1, got 0"),
    (["--min-length", "6", "--max-length", "5"], "--min-length (6) must be <= max_length (5)"),
    (["--max-length", "1001"], "max-length must be <= 1000, got 1001"),
    (["--train-size", "0"], "train-size must be >= 1, got 0"),
    (["--valid-size", "0"], "valid-size must be >= 1, got 0"),
    (["--test-size", "-3"], "test-size must be >= 1, got -3"),
    (["--hidden", "4", "4"], "--hidden lists a size twice: 4 4"),
    (["--hidden", "4", "0"], "--hidden must be >= 1, got 0"),
    (["--data", "random"], "argument --data: invalid choice: 'random'"),
]
ADDITION = [
    (["--train-lengths", "0"], "--train-lengths must be in 1.."),
    (["--train-lengths", ""], "--train-lengths is empty"),
    (["--train-lengths", "9-3"], "--train-lengths range '9-3' runs backwards"),
    (["--train-lengths", "1-x"], "--train-lengths '1-x' is not a length or a range"),
    (["--eval-lengths", "0-4"], "--eval-lengths must be in 1.."),
    (["--train-size", "0"], "train-size must be in 1..10000000, got 0"),
    (["--test-pairs", "0"], "test-pairs must be in 1..10000000, got 0"),
    (["--eval-pairs", "-1"], "eval-pairs must be in 1..10000000, got -1"),
    (["--train-noise", "-0.5"], "train-noise must be in 0..10, got -0.5"),
    (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
]


@pytest.mark.parametrize("case", MNIST, ids=case_id)
def test_mnist_options(case, tmp_path, capsys):
    check("mnist", *case, tmp_path, capsys)


@pytest.mark.parametrize("case", RECALL, ids=case_id)
def test_recall_options(case, tmp_path, capsys):
    check("recall", *case, tmp_path, capsys)


@pytest.mark.parametrize("case", ADDITION, ids=case_id)
def test_addition_options(case, tmp_path, capsys):
    check("addition", *case, tmp_path, capsys)


def test_the_edges_of_the_ranges_are_accepted(tmp_path, capsys):
    """epochs 0, dropout 0, the smallest model: valid, and train (recall needs no data files)."""
    out = tmp_path / "run"
    assert main(["train", "recall", "--epochs", "0", "--hidden", "1", "--layers", "1",
                 "--dropout", "0", "--k", "0", "--min-length", "1", "--max-length", "1",
                 "--train-size", "1", "--valid-size", "1", "--test-size", "1", "--batch-size", "1",
                 "--seed", "0", "--lr", "1e-9", "--clip", "1e-9", "--threads", "1",
                 "--out", str(out), "--quiet", "--no-figures"]) == 0
    summary = json.loads((out / "hidden-1" / "summary.json").read_text())
    assert summary["epochs"] == 0 and math.isfinite(summary["test"]["loss"])


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "RUN", "--threads", "0"], "threads must be >= 1, got 0"),
    (["evaluate", "nowhere"], "nowhere is not an rnnlab run folder (no config.json)"),
    (["predict", "nowhere", "1"], "nowhere is not an rnnlab run folder (no config.json)"),
    (["train"], "rnnlab train: error: the following arguments are required: COMMAND"),
    (["train", "sudoku"], "invalid choice: 'sudoku' (choose from 'mnist', 'recall', 'addition'"),
    (["fly"], "invalid choice: 'fly'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_other_commands(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()
    (tmp_path / "RUN" / "config.json").write_text('{"task": "mnist"}')
    assert message in one_line_error(argv, capsys)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (3, True)])
def test_the_size_guard_counts_exactly_the_recurrent_parameters(cell, layers, bidirectional):
    from rnnlab.core.models import ModelConfig, build_model
    from rnnlab.core.runs import recurrent_parameters

    cfg = ModelConfig(cell=cell, input_size=7, hidden_size=5, num_layers=layers,
                      bidirectional=bidirectional)
    model = build_model("classifier", cfg)
    assert recurrent_parameters(cfg) == sum(p.numel() for p in model.rnn.parameters())
