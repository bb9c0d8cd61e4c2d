"""Digit recall (task 2): the generator, packing, learning, and every command end to end."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.core.cells import CELLS
from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig, SequenceClassifier
from rnnlab.core.records import RunRecord
from rnnlab.core.seeding import stream_generator
from rnnlab.core.train import ClassificationObjective, evaluate, train_one_epoch
from rnnlab.tasks import recall
from rnnlab.tasks.recall.data import (
    SEEDS,
    DigitSequences,
    FreshBatches,
    RecallConfig,
    decode,
    make_splits,
)

torch.set_num_threads(1)


# -- the generator --------------------------------------------------------------------
def test_same_seed_same_tensors_other_seed_other_tensors():
    a, b = make_splits(RecallConfig(), 7), make_splits(RecallConfig(), 7)
    c = make_splits(RecallConfig(), 8)
    for name in ("train", "valid", "test"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y) and torch.equal(x.lengths, y.lengths)
        assert not torch.equal(x.x, getattr(c, name).x)
    assert not torch.equal(a.valid.x, a.test.x[: len(a.valid)])  # each split its own stream


def test_generator_is_pinned_across_machines():
    """The seed alone fixes the data: torch's CPU generator is platform-independent."""
    test = make_splits(RecallConfig(), 2111).test
    assert test.sequences(range(3)) == GOLDEN_FIRST_TEST_SEQUENCES


GOLDEN_FIRST_TEST_SEQUENCES = [[0, 9, 8, 1, 8, 8, 7, 0, 6], [3, 2, 0, 9, 7, 8], [4, 1, 7]]


def test_fresh_batches_depend_only_on_seed_and_epoch():
    task = DigitSequences()
    first = list(FreshBatches(task, 100, 32, seed=3).epoch_batches(1))
    again = list(FreshBatches(task, 100, 32, seed=3).epoch_batches(1))
    other_epoch = list(FreshBatches(task, 100, 32, seed=3).epoch_batches(2))
    assert [len(b) for b in first] == [32, 32, 32, 4]
    assert FreshBatches(task, 100, 32, seed=3).num_batches() == 4
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y)
               for p, q in zip(first, again, strict=True))
    assert not torch.equal(first[0].x, other_epoch[0].x)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 5), extra=st.integers(0, 3), spread=st.integers(0, 6),
       seed=st.integers(0, 2**31))
def test_label_is_the_digit_at_k_and_encoding_is_one_hot(k, extra, spread, seed):
    task = DigitSequences(k, k + 1 + extra, k + 1 + extra + spread)
    s = task.generate(200, stream_generator(SEEDS, seed, "t"))
    digits = decode(s.x, s.lengths)
    assert [d[k] for d in digits] == s.y.tolist()  # the label is exactly the digit at K
    assert digits == s.sequences()
    inside = torch.arange(s.x.shape[1]) < s.lengths[:, None]
    assert torch.equal(s.x.sum(dim=-1), inside.float())  # one 1 per step, zeros past the end
    assert int(s.lengths.min()) >= task.min_length and int(s.lengths.max()) <= task.max_length
    assert s.x.shape[1] == int(s.lengths.max())  # trimmed to the longest sequence


def test_reference_sets_have_the_exercise_sizes():
    splits = make_splits(RecallConfig(), 2111)
    assert len(splits.train) == 800 and len(splits.valid) == 100 and len(splits.test) == 100
    assert torch.bincount(splits.train.lengths).tolist() == [0, 0, 0] + [100] * 8
    # rounds of lengths 3..10
    assert splits.train.lengths[:9].tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 3]
    assert len(set(splits.test.lengths.tolist())) > 1  # random lengths


def test_fresh_mode_defaults():
    cfg = RecallConfig(data="fresh")
    assert (cfg.train_size, cfg.valid_size, cfg.test_size) == (20_000, 2_000, 10_000)
    splits = make_splits(cfg, 1)
    assert splits.train is None and len(splits.test) == 10_000


@pytest.mark.parametrize("fields, message", [
    (dict(k=3), "must be < min_length"),
    (dict(k=-1), "k must be >= 0"),
    (dict(min_length=0, k=0), "min_length must be >= 1"),
    (dict(min_length=6, max_length=5), "must be <= max_length"),
    (dict(test_size=0), "test_size must be >= 1"),
    (dict(train_size=-3), "train_size must be >= 1"),
    (dict(data="online"), "choose one of reference, fresh"),
    (dict(max_length=10**6), "max_length must be <="),
])
def test_bad_task_configs_are_one_line_user_errors(fields, message):
    with pytest.raises(UserError, match=message) as err:
        RecallConfig(**fields)
    assert "\n" not in str(err.value)


# -- packing and learning --------------------------------------------------------------
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batch_equals_each_sequence_alone(cell, bidirectional):
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell=cell, input_size=10, hidden_size=6,
                                           bidirectional=bidirectional)).eval()
    s = DigitSequences(1, 2, 9).generate(12, stream_generator(SEEDS, 0, "pack"))
    with torch.no_grad():
        batched = model(s.x, s.lengths)
        alone = torch.cat([model(s.x[i : i + 1, : int(n)]) for i, n in enumerate(s.lengths)])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_lstm_learns_recall_on_a_small_budget():
    """Hidden 10, batches of fresh sequences: >95% on 1,000 test sequences in ~1 s, one thread."""
    torch.manual_seed(0)
    task = DigitSequences(1, 3, 10)
    model = SequenceClassifier(ModelConfig(cell="lstm", input_size=10, hidden_size=10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    objective = ClassificationObjective()
    train_one_epoch(model, FreshBatches(task, 128 * 400, 128, seed=0).epoch_batches(1), objective,
                    optimizer)
    test = task.generate(1000, stream_generator(SEEDS, 0, "test"))
    assert evaluate(model, test.dataset().in_order(500), objective)["accuracy"] > 0.95


# -- the commands ----------------------------------------------------------------------
@pytest.fixture
def cli():
    from rnnlab.cli import main

    return main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-size dry-run sweep, trained once for the module's command tests."""
    from rnnlab.cli import main

    out = tmp_path_factory.mktemp("recall") / "sweep"
    assert main(["train", "recall", "--dry-run", "--hidden", "2", "4", "--quiet", "--threads", "1",
                 "--seed", "5", "--out", str(out)]) == 0
    return out


def test_train_dry_run_leaves_records_and_figures(trained, capsys):
    for hidden in (2, 4):
        run = trained / f"hidden-{hidden}"
        record = RunRecord.open(run)
        assert record.is_complete
        assert record.config()["model"]["hidden_size"] == hidden
        test = record.summary()["test"]
        assert test["examples"] == recall.SMALL_SIZES[2]
        by_length = test["by_length"]
        assert [r["length"] for r in by_length] == list(range(3, 11))
        assert sum(r["examples"] for r in by_length) == test["examples"]
        assert sum(r["correct"] for r in by_length) == round(test["accuracy"] * test["examples"])
        examples = json.loads((run / "examples.json").read_text())
        assert sorted(e["length"] for e in examples["examples"]) == list(range(3, 11))
        assert all(e["sequence"][1] == e["label"]
                   for e in examples["examples"] + examples["errors"])
        for name in ("loss_curves", "valid_accuracy", "test_accuracy_by_length", "examples"):
            assert (run / "figures" / f"{name}.png").is_file()
    for name in ("train_loss", "valid_accuracy", "test_accuracy_by_length"):
        assert (trained / "figures" / f"{name}.png").is_file()


def test_evaluate_recomputes_the_summary(cli, trained, capsys):
    run = trained / "hidden-4"
    assert cli(["evaluate", str(run), "--json", "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    test = RunRecord.open(run).summary()["test"]
    assert metrics["accuracy"] == test["accuracy"]
    assert metrics["by_length"] == test["by_length"]


def test_predict_prints_a_digit_top_k_and_json(cli, trained, capsys):
    run = str(trained / "hidden-4")
    assert cli(["predict", run, "3", "1", "4", "1", "5"]) == 0
    assert capsys.readouterr().out.strip() in [str(d) for d in range(10)]
    assert cli(["predict", run, "3", "1", "4", "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(0 <= float(line.split()[1]) <= 1 for line in lines)
    assert cli(["predict", run, "3 1 4 1 5", "--json", "--top", "10"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["sequence"] == [3, 1, 4, 1, 5] and answer["k"] == 1
    assert answer["prediction"] == answer["top"][0]["digit"]
    assert sum(t["probability"] for t in answer["top"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("inputs, message", [
    (["3", "12", "4"], "digit 12 is outside 0..9"),
    (["3", "-1", "4"], "digit -1 is outside 0..9"),
    (["3", "x", "4"], "'x' is not a digit"),
    (["3", "1.5", "4"], "'1.5' is not a digit"),
    ([""], "empty sequence"),
    (["7"], "at least 2 digits"),
    (["1"] * 11 + ["--max-length", "10"], "more than --max-length 10"),
    (["3", "1", "--top", "11"], "--top must be in 1..10"),
])
def test_bad_predict_inputs_are_one_line_errors(cli, trained, capsys, inputs, message):
    assert cli(["predict", str(trained / "hidden-2"), *inputs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("flags, message", [
    (["--k", "3"], "must be < min_length"),
    (["--min-length", "5", "--max-length", "4"], "must be <= max_length"),
    (["--hidden", "2", "2"], "lists a size twice"),
    (["--train-size", "0"], "train-size must be >= 1"),
    (["--hidden", "0"], "--hidden must be >= 1"),
])
def test_bad_train_flags_are_one_line_errors(cli, tmp_path, capsys, flags, message):
    assert cli(["train", "recall", "--dry-run", "--quiet", "--out", str(tmp_path / "r"),
                *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_fresh_data_run_resumes_to_the_same_metrics(cli, tmp_path, capsys):
    flags = ["train", "recall", "--data", "fresh", "--hidden", "3", "--batch-size", "16",
             "--epochs", "2", "--train-size", "64", "--valid-size", "40", "--test-size", "100",
             "--quiet", "--no-figures", "--threads", "1"]
    assert cli([*flags, "--out", str(tmp_path / "a")]) == 0
    assert cli([*flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    (tmp_path / "b" / "hidden-3" / "summary.json").unlink()  # as if interrupted after epoch 1
    # resuming needs the same config, so rewrite it to the 2-epoch run's
    config = json.loads((tmp_path / "b" / "hidden-3" / "config.json").read_text())
    config["train"]["epochs"] = 2
    (tmp_path / "b" / "hidden-3" / "config.json").write_text(json.dumps(config))
    assert cli([*flags, "--resume", "--out", str(tmp_path / "b")]) == 0
    a, b = (RunRecord.open(tmp_path / x / "hidden-3") for x in "ab")
    assert a.metrics() == b.metrics()
    assert a.summary()["test"]["accuracy"] == b.summary()["test"]["accuracy"]
