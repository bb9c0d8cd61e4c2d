import json
import math

import pytest
import torch

from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import RunPlan, TaskData, execute_run, load_model
from rnnlab.core.train import (
    ClassificationObjective,
    ShuffledBatches,
    StopRule,
    TensorDataset,
    TrainConfig,
    evaluate,
    make_optimizer,
    predict_batches,
    train_one_epoch,
)


def toy_data(n=240, seed=0):
    """Rows-as-steps toy images whose class is written in the brightest row."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.1 * torch.randn(n, 8, 6, generator=g)
    x[torch.arange(n), y * 2, :] += 2.0
    return TensorDataset(x, y)


def toy_plan(tmp_path, name="run", epochs=2, seed=3, **train):
    model = ModelConfig(cell="gru", input_size=6, hidden_size=12, num_outputs=4)
    return RunPlan(tmp_path / name, "mnist", "classifier", model,
                   TrainConfig(epochs=epochs, batch_size=32, lr=0.02, seed=seed, **train),
                   {"dataset": "mnist"}, quiet=True)


def run_toy(plan):
    data = toy_data()
    objective = ClassificationObjective()
    return execute_run(
        plan,
        lambda: TaskData(ShuffledBatches(data, plan.train.batch_size, plan.train.seed),
                         data.in_order(100), objective),
        lambda model, record: evaluate(model, data.in_order(100), objective))


def test_loss_falls_on_a_tiny_fixed_batch():
    torch.manual_seed(0)
    data = toy_data(64)
    model = SequenceClassifier(ModelConfig(cell="lstm", input_size=6, hidden_size=16,
                                           num_outputs=4))
    optimizer = make_optimizer(model, TrainConfig(lr=0.02))
    batch = data.in_order(64)
    first = evaluate(model, batch, ClassificationObjective())["loss"]
    for _ in range(30):
        train_one_epoch(model, iter(batch), ClassificationObjective(), optimizer, clip=1.0)
    last = evaluate(model, batch, ClassificationObjective())["loss"]
    assert last < 0.5 * first


def test_same_seed_gives_identical_metrics_files(tmp_path):
    run_toy(toy_plan(tmp_path, "a"))
    run_toy(toy_plan(tmp_path, "b"))
    for name in ("metrics.csv", "metrics.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = run_toy(toy_plan(tmp_path, "c", seed=4))
    first_metrics = (tmp_path / "a" / "metrics.csv").read_bytes()
    assert (tmp_path / "c" / "metrics.csv").read_bytes() != first_metrics
    assert other["test"]["accuracy"] >= 0.0


def test_run_folder_contents(tmp_path):
    summary = run_toy(toy_plan(tmp_path, epochs=3))
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "metrics.jsonl", "timing.csv", "summary.json",
                 "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    rows = RunRecord(run).metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy",
                            "lr"}
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    assert summary["test"]["accuracy"] > 0.9  # the toy task is easy
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temp files


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    run_toy(toy_plan(tmp_path))
    record = RunRecord.open(tmp_path / "run")
    model, _ = load_model(record, "best")
    again, _ = load_model(record, "best")
    batches = toy_data().in_order(50)
    assert torch.equal(predict_batches(model, batches), predict_batches(again, batches))
    assert math.isclose(evaluate(model, batches, ClassificationObjective())["accuracy"],
                        record.summary()["test"]["accuracy"])


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run_toy(toy_plan(tmp_path))
    with pytest.raises(UserError, match="set `force` to overwrite"):
        run_toy(toy_plan(tmp_path))
    run_toy(RunPlan(**{**toy_plan(tmp_path).__dict__, "force": True}))


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    run_toy(toy_plan(tmp_path, "full", epochs=3, schedule="cosine", clip=1.0))
    plan = toy_plan(tmp_path, "part", epochs=3, schedule="cosine", clip=1.0)

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise Interrupt

    data, objective = toy_data(), ClassificationObjective()
    build = lambda: TaskData(ShuffledBatches(data, 32, plan.train.seed),  # noqa: E731
                             data.in_order(100), objective)
    test = lambda model, record: evaluate(model, data.in_order(100), objective)  # noqa: E731
    with pytest.raises(Interrupt):
        execute_run(plan, build, test, on_epoch=stop_after_two)
    assert not (plan.out / "summary.json").exists()
    summary = execute_run(RunPlan(**{**plan.__dict__, "resume": True}), build, test)
    # the wall time counts the epochs the interrupted process trained, not only its own
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    full_metrics = (tmp_path / "full" / "metrics.csv").read_bytes()
    assert (plan.out / "metrics.csv").read_bytes() == full_metrics
    full = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=True)["state_dict"]
    resumed = torch.load(plan.out / "checkpoints/last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_stop_when_ends_training_after_the_first_epoch_that_meets_it(tmp_path):
    """The toy task passes 0.5 validation accuracy early: training stops there, the record
    says how many epochs ran, and a resume of the stopped run trains nothing more."""
    full = run_toy(toy_plan(tmp_path, "full", epochs=6))
    rows = RunRecord(tmp_path / "full").metrics()
    first = next(r["epoch"] for r in rows if r["valid_accuracy"] >= 0.5)
    assert first < 6, "the rule must be met before the last epoch for this test to mean much"
    stopped = run_toy(toy_plan(tmp_path, "stop", epochs=6, stop_when="accuracy>=0.5"))
    assert stopped["epochs"] == first and full["epochs"] == 6
    assert RunRecord(tmp_path / "stop").metrics() == rows[:first]  # the same epochs, bit for bit
    plan = toy_plan(tmp_path, "stop", epochs=6, stop_when="accuracy>=0.5")
    (plan.out / "summary.json").unlink()  # as if killed before testing: resume, train nothing
    again = run_toy(RunPlan(**{**plan.__dict__, "resume": True}))
    assert again["epochs"] == first


@pytest.mark.parametrize("rule,row,met", [("loss<0.01", {"valid_loss": 0.009}, True),
                                          ("loss < 0.01", {"valid_loss": 0.01}, False),
                                          ("loss<=0.01", {"valid_loss": 0.01}, True),
                                          ("accuracy>=0.99", {"valid_accuracy": 0.99}, True),
                                          ("accuracy>0.99", {"valid_accuracy": 0.99}, False)])
def test_stop_rules_compare_the_validation_metric(rule, row, met):
    assert StopRule.parse(rule).met(row) is met


def test_a_stop_rule_reads_back_in_words():
    assert StopRule.parse(" accuracy >= 0.995").text() == "validation accuracy >= 0.995"
    assert StopRule.parse("loss<1e-3").text() == "validation loss < 0.001"


@pytest.mark.parametrize("rule", ["loss", "mse<0.01", "loss<<1", "accuracy>=x", "loss<1e999",
                                  "loss<0.01 or so"])
def test_a_stop_rule_that_does_not_parse_is_refused(rule):
    with pytest.raises(UserError, match="stop_when"):
        TrainConfig(stop_when=rule)


@pytest.mark.parametrize("field,value", [("epochs", -1),
                                         ("batch_size", 0),
                                         ("lr", 0.0),
                                         ("clip", -1.0),
                                         ("optimizer", "rmsprop"),
                                         ("schedule", "step")])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(UserError):
        TrainConfig(**{field: value})


def test_shift_augmentation_keeps_ink_and_moves_it():
    from rnnlab.core.train import Batch
    from rnnlab.tasks.mnist.data import shift_images

    x = torch.zeros(4, 28, 28)
    x[:, 10:18, 10:18] = 1.0
    shifted = shift_images(Batch(x, torch.zeros(4)), torch.Generator().manual_seed(0), 2, 0.0).x
    assert torch.allclose(shifted.sum(dim=(1, 2)), x.sum(dim=(1, 2)))
    assert not torch.equal(shifted, x)
