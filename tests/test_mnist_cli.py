"""The MNIST task end to end through the CLI, on the fake MNIST of tests/fakes.py."""

import json

from rnnlab.cli import main
from rnnlab.core.records import RunRecord


def test_train_dry_run_evaluate_and_figures(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mnist", "--dry-run", "--cell", "gru", "--hidden", "16",
                 "--bidirectional", "--batch-size", "64", "--out", str(out), "--quiet",
                 "--threads", "1"]) == 0
    record = RunRecord.open(out)
    assert record.is_complete
    assert record.config()["model"]["bidirectional"] is True
    for name in ("loss_curves.png", "valid_accuracy.png", "confusion_matrix.png",
                 "test_examples.png", "test_loss_per_batch.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--dry-run"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert abs(metrics["accuracy"] - record.summary()["test"]["accuracy"]) < 1e-9


def test_fake_mnist_is_learned_in_one_short_epoch(fake_mnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "mnist", "--dry-run", "--cell", "lstm", "--hidden", "32",
                 "--batch-size", "50", "--lr", "0.02", "--out", str(out), "--quiet",
                 "--no-figures"]) == 0
    assert RunRecord.open(out).summary()["test"]["accuracy"] > 0.5


def test_existing_run_needs_force(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "mnist", "--dry-run", "--hidden", "8", "--out", str(out), "--quiet",
            "--no-figures"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert main([*args, "--force"]) == 0


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main(["train", "mnist", "--dry-run", "--data-dir", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rnnlab data fetch" in err[0]
