"""Resume: an interrupted run continues to the same bytes as an uninterrupted one.

In-process interruptions (an exception or Ctrl-C in the middle of an epoch or
between epochs); tests/test_resume_kill.py does the same with kill -9 on a real
process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rnnlab.core.train
from rnnlab.cli import main
from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, TaskData, execute_run
from rnnlab.core.train import (
    Batch,
    ClassificationObjective,
    ShuffledBatches,
    TensorDataset,
    TrainConfig,
    evaluate,
)

SAME_BYTES = ("config.json", "metrics.csv", "metrics.jsonl")


class Interrupt(Exception):
    pass


def toy_data(n=96, seed=0) -> TensorDataset:
    """Rows-as-steps toy sequences whose class is written in the brightest row."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.1 * torch.randn(n, 8, 6, generator=g)
    x[torch.arange(n), y * 2, :] += 2.0
    return TensorDataset(x, y)


def jitter(batch: Batch, generator: torch.Generator) -> Batch:
    """An augmentation drawing from the epoch's generator, like MNIST's random shifts."""
    return Batch(batch.x + 0.05 * torch.randn(batch.x.shape, generator=generator), batch.y,
                 batch.lengths)


def stop_after(batches, after: int, error: BaseException):
    """The first ``after`` batches, then ``error`` (Ctrl-C or a crash in the middle of an epoch)."""
    for i, batch in enumerate(batches):
        if i == after:
            raise error
        yield batch


class StopInEpoch:
    """A BatchSource that raises ``error`` after ``after`` batches of epoch ``epoch``."""

    def __init__(self, source, epoch: int, after: int, error: BaseException):
        self.source, self.epoch, self.after, self.error = source, epoch, after, error

    def num_batches(self) -> int:
        return self.source.num_batches()

    def epoch_batches(self, epoch: int):
        batches = self.source.epoch_batches(epoch)
        return stop_after(batches, self.after, self.error) if epoch == self.epoch else batches


def toy_plan(out: Path, cell="lstm", layers=2, dropout=0.3, resume=False, **train) -> RunPlan:
    model = ModelConfig(cell=cell, input_size=6, hidden_size=10, num_layers=layers, dropout=dropout,
                        num_outputs=4)
    train = {"epochs": 3, "batch_size": 16, "lr": 0.02, "seed": 11, **train}
    return RunPlan(out, "mnist", "classifier", model, TrainConfig(**train), {"dataset": "mnist"},
                   quiet=True, resume=resume)


def run_toy(plan: RunPlan, wrap=lambda source: source, on_epoch=None) -> dict:
    data, objective = toy_data(), ClassificationObjective()
    source = ShuffledBatches(data, plan.train.batch_size, plan.train.seed, jitter)
    return execute_run(plan, lambda: TaskData(wrap(source), data.in_order(40), objective),
                       lambda model, record: evaluate(model, data.in_order(40), objective),
                       on_epoch)


def checkpoint(run: Path, name: str = "last") -> dict:
    return torch.load(run / "checkpoints" / f"{name}.pt", weights_only=True)


def assert_same_run(a: Path, b: Path, names=SAME_BYTES) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ("last", "best"):
        ca, cb = checkpoint(a, name), checkpoint(b, name)
        assert ca["epoch"] == cb["epoch"]
        assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k])
                   for k in ca["state_dict"]), name
    la, lb = checkpoint(a), checkpoint(b)
    assert torch.equal(la["torch_rng"], lb["torch_rng"])
    assert la["scheduler"] == lb["scheduler"]
    for pa, pb in zip(la["optimizer"]["state"].values(), lb["optimizer"]["state"].values(),
                      strict=True):
        assert all(torch.equal(pa[k], pb[k]) if torch.is_tensor(pa[k]) else pa[k] == pb[k]
                   for k in pa)


OPTIMISATION = [
    dict(optimizer="sgd", schedule="constant", clip=None),
    dict(optimizer="adam", schedule="cosine", clip=1.0),
    dict(optimizer="adamw", schedule="onecycle", clip=0.05, weight_decay=0.01),
]


@pytest.mark.parametrize("optimisation", OPTIMISATION,
                         ids=lambda o: f"{o['optimizer']}-{o['schedule']}")
def test_ctrl_c_mid_epoch_then_resume_is_bit_identical(tmp_path, optimisation):
    run_toy(toy_plan(tmp_path / "full", **optimisation))
    part = toy_plan(tmp_path / "part", **optimisation)
    with pytest.raises(KeyboardInterrupt):
        run_toy(part, wrap=lambda source: StopInEpoch(source, epoch=2, after=3,
                                                      error=KeyboardInterrupt()))
    assert checkpoint(part.out)["epoch"] == 1 and not (part.out / "summary.json").exists()
    run_toy(toy_plan(tmp_path / "part", resume=True, **optimisation))
    assert_same_run(tmp_path / "full", part.out)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_interruption_between_epochs_then_resume_is_bit_identical(tmp_path, cell):
    run_toy(toy_plan(tmp_path / "full", cell=cell, schedule="cosine", clip=0.5))
    part = toy_plan(tmp_path / "part", cell=cell, schedule="cosine", clip=0.5)

    def stop(row):
        if row["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_toy(part, on_epoch=stop)
    run_toy(toy_plan(tmp_path / "part", cell=cell, schedule="cosine", clip=0.5, resume=True))
    assert_same_run(tmp_path / "full", part.out)


def test_resume_with_nothing_to_resume_starts_from_scratch(tmp_path):
    run_toy(toy_plan(tmp_path / "full"))
    run_toy(toy_plan(tmp_path / "new", resume=True))
    assert_same_run(tmp_path / "full", tmp_path / "new")


def test_resuming_a_complete_run_trains_nothing(tmp_path):
    first = run_toy(toy_plan(tmp_path / "run"))
    last = tmp_path / "run/checkpoints/last.pt"
    stamp = last.stat().st_mtime_ns
    assert run_toy(toy_plan(tmp_path / "run", resume=True)) == first
    assert last.stat().st_mtime_ns == stamp


def test_resume_removes_temp_files_left_by_a_killed_writer(tmp_path):
    run_toy(toy_plan(tmp_path / "full"))
    part = toy_plan(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        run_toy(part, wrap=lambda source: StopInEpoch(source, epoch=2, after=1,
                                                      error=KeyboardInterrupt()))
    (part.out / "checkpoints/.last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (part.out / ".metrics.csv.xyz.tmp").write_text("epoch,tr")
    run_toy(toy_plan(part.out, resume=True))
    assert not list(part.out.rglob("*.tmp"))
    assert_same_run(tmp_path / "full", part.out)


def test_killed_while_writing_config_json_still_resumes(tmp_path):
    """Only a temp config is there: --resume starts the run (without --resume it would refuse)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run/.config.json.q1w2.tmp").write_text('{"tas')
    with pytest.raises(UserError, match="already exists"):
        run_toy(toy_plan(tmp_path / "run"))
    run_toy(toy_plan(tmp_path / "run", resume=True))
    run_toy(toy_plan(tmp_path / "full"))
    assert_same_run(tmp_path / "full", tmp_path / "run")


def test_a_last_checkpoint_that_does_not_fit_is_a_user_error(tmp_path):
    part = toy_plan(tmp_path / "part")

    def stop(row):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_toy(part, on_epoch=stop)
    other = toy_plan(tmp_path / "other", layers=1, dropout=0.0, epochs=1)
    run_toy(other)
    (part.out / "checkpoints/last.pt").write_bytes((other.out / "checkpoints/last.pt").read_bytes())
    with pytest.raises(UserError, match=r"cannot resume from .*last\.pt: it does not fit this run"):
        run_toy(toy_plan(part.out, resume=True))


# -- through the command line: every task's own data source --------------------------
RECALL = ["train", "recall", "--data", "fresh", "--hidden", "5", "--layers", "2",
          "--dropout", "0.2", "--train-size", "64", "--valid-size", "20", "--test-size", "20",
          "--batch-size", "8", "--epochs", "3", "--schedule", "cosine", "--clip", "1",
          "--seed", "3", "--threads", "1", "--quiet", "--no-figures"]
ADDITION = ["train", "addition", "--data", "fresh", "--train-noise", "0.1", "--hidden", "4",
            "--layers", "2", "--dropout", "0.2",
            "--train-size", "48", "--test-pairs", "10", "--eval-lengths", "3", "--eval-pairs", "5",
            "--batch-size", "8", "--epochs", "3", "--schedule", "onecycle", "--clip", "0.5",
            "--seed", "3", "--threads", "1", "--quiet", "--no-figures"]


def interrupt_in_epoch(monkeypatch, epoch: int, after: int) -> None:
    """Make ``fit`` see Ctrl-C after ``after`` batches of epoch ``epoch``."""
    real = rnnlab.core.train.train_one_epoch
    calls = []

    def train_one_epoch(model, batches, *args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            batches = stop_after(batches, after, KeyboardInterrupt())
        return real(model, batches, *args, **kwargs)

    monkeypatch.setattr(rnnlab.core.train, "train_one_epoch", train_one_epoch)


@pytest.mark.parametrize("argv,run_dir,extra",
                         [(RECALL, "hidden-5", ("examples.json", "test_predictions.csv")),
                          (ADDITION, "", ("test_by_epoch.jsonl",))],
                         ids=["recall-fresh", "addition-fresh-noise"])
def test_cli_ctrl_c_then_resume_matches(tmp_path, monkeypatch, capsys, argv, run_dir, extra):
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, epoch=2, after=2)
        assert main([*argv, "--out", str(tmp_path / "part")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("rnnlab: interrupted")
    assert main([*argv, "--out", str(tmp_path / "part"), "--resume"]) == 0
    assert_same_run(tmp_path / "full" / run_dir, tmp_path / "part" / run_dir,
                    (*SAME_BYTES, *extra))


def test_addition_kill_between_checkpoint_and_test_row_is_caught_up(tmp_path, monkeypatch, capsys):
    """Ctrl-C after epoch 2's last.pt but before its test_by_epoch row: resume scores it."""
    from rnnlab import tasks  # noqa: F401
    from rnnlab.tasks import addition
    from rnnlab.tasks.addition import data as addition_data

    assert main([*ADDITION, "--out", str(tmp_path / "full")]) == 0
    real = addition.EpochTester.score_last

    def score_last(self, record, epoch):
        if epoch == 2 and not (tmp_path / "interrupted").exists():
            (tmp_path / "interrupted").touch()
            raise KeyboardInterrupt
        return real(self, record, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(addition.EpochTester, "score_last", score_last)
        assert main([*ADDITION, "--out", str(tmp_path / "part")]) == 130
        part = RunRecord(tmp_path / "part")
        assert [r["epoch"] for r in addition_data.read_test_by_epoch(part)] == [1]
        assert checkpoint(tmp_path / "part")["epoch"] == 2
        assert main([*ADDITION, "--out", str(tmp_path / "part"), "--resume"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "part", (*SAME_BYTES, "test_by_epoch.jsonl"))


def cli_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("rnnlab: error: "), err
    return err


def test_cli_resume_with_another_config_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*RECALL, "--out", out]) == 0
    err = cli_error([*RECALL, "--out", out, "--resume", "--lr", "0.5"], capsys)
    assert "config differs" in err and "--force" in err


def test_cli_resume_from_a_truncated_last_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, epoch=2, after=1)
        assert main([*RECALL, "--out", str(out)]) == 130
    last = out / "hidden-5/checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    err = cli_error([*RECALL, "--out", str(out), "--resume"], capsys)
    assert "last.pt is truncated or corrupt" in err


def test_cli_resume_of_a_finished_run_prints_its_result(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*RECALL, "--out", out]) == 0
    first = capsys.readouterr().out
    metrics = (tmp_path / "run/hidden-5/metrics.jsonl").read_bytes()
    assert main([*RECALL, "--out", out, "--resume"]) == 0
    assert capsys.readouterr().out.split(":")[1] == first.split(":")[1]
    assert (tmp_path / "run/hidden-5/metrics.jsonl").read_bytes() == metrics
    assert json.loads((tmp_path / "run/hidden-5/summary.json").read_text())["epochs"] == 3
    assert RunRecord.open(tmp_path / "run/hidden-5").is_complete
