"""Binary addition task: the generator against Python integers, masking, metrics,
learning a length, the CLI (train, evaluate, predict) and its one-line errors."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnlab.cli import main
from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig, build_model
from rnnlab.core.records import RunRecord
from rnnlab.core.train import Batch, TrainConfig, make_optimizer, set_seed, train_one_epoch
from rnnlab.tasks.addition import add_with_model
from rnnlab.tasks.addition import data as addition
from rnnlab.tasks.addition import study as addition_study
from rnnlab.tasks.addition.data import (
    AdditionConfig,
    BinaryPairs,
    BitObjective,
    FreshBatches,
    add_bits,
    bits_to_int,
    format_lengths,
    in_batches,
    int_to_bits,
    parse_lengths,
    score,
)

torch.set_num_threads(1)


def tiny_model(hidden: int = 4) -> nn.Module:
    set_seed(0)
    return build_model("per_step", ModelConfig(cell="lstm", input_size=2, hidden_size=hidden,
                                                num_outputs=1))


class ExactAdder(nn.Module):
    """A stand-in model that adds perfectly: large logits of the true sum bits."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        bits = add_bits(x[..., 0].round().long(), x[..., 1].round().long())  # (B, T)
        return 10.0 * (2.0 * bits.float() - 1.0)


def exit_code(argv: list[str]) -> int:
    """``main``'s exit code, including argparse's own errors (which raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


# -- the generator against Python integers ------------------------------------------------
def check_pair(x: torch.Tensor, y: torch.Tensor, length: int) -> None:
    """One generated pair against Python int addition, padding included."""
    first = bits_to_int(x[:length, 0].long().tolist())
    second = bits_to_int(x[:length, 1].long().tolist())
    assert 0 <= first < 2 ** (length - 1) and 0 <= second < 2 ** (length - 1)
    assert y[:length].long().tolist() == int_to_bits(first + second, length)
    assert not x[length:].any() and not y[length:].any()  # zero padding


@pytest.mark.parametrize("length", [1, 2, 3, 8, 20, 64, 65, 200])
def test_fixed_length_pairs_match_python_ints(length):
    data = BinaryPairs(seed=3).fixed(300, length)
    assert data.x.shape == (300, length, 2) and data.y.shape == (300, length)
    assert data.lengths.tolist() == [length] * 300
    for x, y in zip(data.x, data.y, strict=True):
        check_pair(x, y, length)


def test_long_pairs_go_beyond_int64_and_cover_the_range():
    data = BinaryPairs(seed=1).fixed(50, 200)
    firsts = [bits_to_int(x[:, 0].long().tolist()) for x in data.x]
    assert max(firsts) > 2**190  # far beyond int64, generated bit by bit
    assert all(x[-1].sum() == 0 for x in data.x)  # the top bit of N1 and N2 is 0
    ones = data.x[:, :-1].mean().item()
    assert abs(ones - 0.5) < 0.02  # the free bits are fair coins


@pytest.mark.parametrize("varied", [False, True])
def test_mixed_lengths_are_padded_and_uniform(varied):
    task = BinaryPairs(seed=7)
    data = task.sample(2000, range(1, 21), "mixed", varied=varied)
    assert data.x.shape[1] == 20
    counts = torch.bincount(data.lengths, minlength=21)[1:]
    assert counts.min() > 50  # every length 1..20 drawn, roughly 100 each
    for x, y, length in zip(data.x[:400], data.y[:400], data.lengths[:400].tolist(), strict=True):
        check_pair(x, y, length)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 2**n - 1),
                                                        st.integers(0, 2**n - 1))))
def test_add_bits_is_integer_addition(case):
    length, a, b = case
    out = add_bits(torch.tensor([int_to_bits(a, length)]), torch.tensor([int_to_bits(b, length)]))
    assert bits_to_int(out[0].tolist()) == (a + b) % 2**length


def test_same_seed_same_pairs_and_streams_independent():
    one, two = BinaryPairs(5), BinaryPairs(5)
    assert torch.equal(one.fixed(20, 9).x, two.fixed(20, 9).x)
    assert not torch.equal(one.fixed(20, 9).x, BinaryPairs(6).fixed(20, 9).x)
    assert not torch.equal(one.fixed(20, 9).x, one.sample(20, [9], "other").x)


def test_fresh_batches_replay_by_epoch():
    source = FreshBatches(BinaryPairs(0), range(1, 11), pairs_per_epoch=100, batch_size=32)
    assert source.num_batches() == 4
    first, again = list(source.epoch_batches(1)), list(source.epoch_batches(1))
    assert [len(b) for b in first] == [32, 32, 32, 4]
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
               for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].x, next(source.epoch_batches(2)).x)
    fixed = next(FreshBatches(BinaryPairs(0), [6], 10, 10).epoch_batches(1))
    assert fixed.lengths is None and fixed.x.shape == (10, 6, 2)  # one length: no packing needed


def test_by_length_batches_hold_one_length_each():
    source = FreshBatches(BinaryPairs(0), range(1, 21), 640, 64, by_length=True)
    batches = list(source.epoch_batches(1))
    assert all(b.lengths is None for b in batches)  # full length: no padding, no packing
    assert len({b.x.shape[1] for b in batches}) > 3
    for batch in batches[:3]:
        for x, y in zip(batch.x, batch.y, strict=True):
            check_pair(x, y, batch.x.shape[1])


def test_noise_only_on_unpadded_training_inputs():
    source = FreshBatches(BinaryPairs(0), range(1, 11), 64, 64, noise=0.3)
    batch = next(source.epoch_batches(1))
    padding = ~addition.step_mask(batch)
    assert not batch.x[padding].any()
    assert (batch.x[~padding] - batch.x[~padding].round()).abs().max() > 0.1


# -- objective, masking, metrics -------------------------------------------------------------
def test_objective_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 9.0]])
    batch = Batch(torch.zeros(2, 3, 2), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]),
                  torch.tensor([2, 3]))
    bce = BitObjective("bce")(logits, batch)
    assert (bce.items, bce.correct) == (5, 3)  # bits 0,1 of the first; bit 1 of the second
    expected = (F.softplus(-torch.tensor(2.0)) + F.softplus(torch.tensor(-1.0))
                + F.softplus(torch.tensor(3.0)) + F.softplus(torch.tensor(-4.0))
                + F.softplus(torch.tensor(9.0))) / 5
    assert math.isclose(float(bce.loss), float(expected), rel_tol=1e-6)
    mse = BitObjective("mse")(logits, batch)
    p = torch.sigmoid(logits)
    expected = ((1 - p[0, 0]) ** 2 + p[0, 1] ** 2 + (1 - p[1, 0]) ** 2 + (1 - p[1, 1]) ** 2
                + p[1, 2] ** 2) / 5
    assert math.isclose(float(mse.loss), float(expected), rel_tol=1e-6)


def test_reference_multiclass_ce_by_hand():
    """The reference's flawed loss: one softmax over a pair's steps of the sigmoid outputs."""
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 9.0]])
    batch = Batch(torch.zeros(2, 3, 2), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]),
                  torch.tensor([2, 3]))
    result = BitObjective("multiclass-ce")(logits, batch)
    first = -torch.log_softmax(torch.sigmoid(logits[0, :2]), 0)[0]
    second = -torch.log_softmax(torch.sigmoid(logits[1]), 0)[:2].sum()
    assert math.isclose(float(result.loss), float(first + second) / 2, rel_tol=1e-6)
    assert (result.items, result.correct) == (5, 3)


@pytest.mark.parametrize("loss", ["mse", "bce", "multiclass-ce"])
def test_padding_changes_neither_loss_nor_accuracy(loss):
    model, objective = tiny_model(), BitObjective(loss)
    data = BinaryPairs(2).sample(40, range(1, 13), "mask")
    batch = Batch(data.x, data.y, data.lengths)
    extra = 7  # pad every pair with 7 more steps; padding inputs and targets set to garbage
    padded = Batch(torch.cat([data.x, torch.ones(40, extra, 2)], dim=1),
                   torch.cat([data.y, torch.ones(40, extra)], dim=1), data.lengths)
    with torch.no_grad():
        plain = objective(model(batch.x, batch.lengths), batch)
        more = objective(model(padded.x, padded.lengths), padded)
        garbage = torch.cat([model(batch.x, batch.lengths), 5 * torch.randn(40, extra)], dim=1)
        wild = objective(garbage, padded)
    for result in (more, wild):
        assert torch.allclose(result.loss, plain.loss, atol=1e-7)
        assert (result.items, result.correct) == (plain.items, plain.correct)
    assert plain.items == int(data.lengths.sum())
    assert score(model, [batch], objective) == pytest.approx(score(model, [padded], objective))


def test_score_counts_whole_numbers():
    data = BinaryPairs(4).sample(50, range(1, 30), "score")
    batches = in_batches(data, 16)
    perfect = score(ExactAdder(), batches, BitObjective("bce"))
    assert (perfect["bit_accuracy"] == 1.0 and perfect["number_accuracy"] == 1.0
            and perfect["pairs"] == 50)

    class OneBitWrong(ExactAdder):
        def forward(self, x, lengths=None):
            logits = super().forward(x, lengths)
            logits[0, 0] = -logits[0, 0]  # flip the first bit of the first pair only
            return logits

    flipped = score(OneBitWrong(), [in_batches(data, 50)[0]], BitObjective("bce"))
    assert flipped["number_accuracy"] == pytest.approx(49 / 50)
    assert flipped["bit_accuracy"] == pytest.approx(1 - 1 / flipped["bits"])


def test_a_model_learns_length_8_in_seconds():
    model = tiny_model(hidden=8)
    task = BinaryPairs(0)
    source, objective = FreshBatches(task, [8], 3200, 32), BitObjective("bce")
    optimizer = make_optimizer(model, TrainConfig(lr=0.03))
    test = in_batches(task.fixed(500, 8), 500)
    for epoch in range(1, 7):
        train_one_epoch(model, source.epoch_batches(epoch), objective, optimizer)
        if score(model, test, objective)["number_accuracy"] == 1.0:
            break
    result = score(model, test, objective)
    assert result["number_accuracy"] == 1.0, result


# -- lengths and config ---------------------------------------------------------------------
def test_length_specs():
    assert parse_lengths("1-20") == tuple(range(1, 21))
    assert parse_lengths("5") == (5,)
    assert parse_lengths("1-20,50,100,1000,3") == (*range(1, 21), 50, 100, 1000)
    assert format_lengths(parse_lengths("3, 1-2 ,10")) == "1-3,10"


@pytest.mark.parametrize("spec", ["", "0", "5-3", "a", "1-2-3", "1,,2", "200000", "-1", "1.5"])
def test_bad_length_specs_are_one_line_errors(spec):
    with pytest.raises(UserError) as err:
        AdditionConfig(train_lengths=spec)
    assert "\n" not in str(err.value) and "train_lengths" in str(err.value)


def test_config_validation_and_round_trip():
    for bad in ({"loss": "ce"}, {"data": "web"}, {"train_size": 0}, {"eval_pairs": -1},
                {"train_bits": "x"}, {"train_noise": -0.1}):
        with pytest.raises(UserError):
            AdditionConfig(**bad)
    cfg = AdditionConfig(train_lengths="3,1-2", eval_lengths="1-20,1000")
    assert cfg.train_lengths == "1-3" and cfg.eval_length_list[-1] == 1000
    assert AdditionConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg


# -- predict -----------------------------------------------------------------------------------
def test_add_with_model_reads_and_writes_msb_first():
    result = add_with_model(ExactAdder(), "1011", "0110")
    assert result["model_sum"] == result["true_sum"] == "10001"
    assert result["model_sum_decimal"] == "17" and result["decimal"] == ["11", "6"]
    assert result["correct"] and result["wrong_bits"] == 0 and result["steps"] == 5
    a, b = random.Random(0).getrandbits(999), random.Random(1).getrandbits(1200)
    big = add_with_model(ExactAdder(), format(a, "b"), format(b, "b"))
    assert int(big["model_sum"], 2) == a + b and big["true_sum_decimal"] == str(a + b)


# -- CLI end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("addition") / "run"
    code = main(["train", "addition", "--dry-run", "--quiet", "--threads", "1", "--loss", "bce",
                 "--eval-lengths", "1-20,50", "--out", str(out)])
    assert code == 0
    return out


def test_train_dry_run_leaves_a_record(dry_run):
    record = RunRecord.open(dry_run)
    config, summary = record.config(), record.summary()
    assert config["task"] == "addition" and config["model_kind"] == "per_step"
    assert config["model"]["input_size"] == 2 and config["model"]["num_outputs"] == 1
    assert (config["task_config"]["loss"] == "bce"
            and config["task_config"]["eval_lengths"] == "1-20,50")
    rows = summary["test"]["by_length"]
    assert [r["length"] for r in rows] == [*range(1, 21), 50]
    assert all(0 <= r["bit_accuracy"] <= 1 and 0 <= r["number_accuracy"] <= 1 for r in rows)
    assert rows[0]["number_accuracy"] == rows[0]["bit_accuracy"]  # L = 1: one bit per number
    tests = addition.read_test_by_epoch(record)
    assert [t["epoch"] for t in tests] == [1] and 0 <= tests[0]["test_accuracy"] <= 1
    for name in ("learning_curves.png", "accuracy_by_length.png"):
        assert (record.figures_dir / name).stat().st_size > 1000


def test_evaluate_matches_the_summary(dry_run, capsys):
    assert main(["evaluate", str(dry_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    summary = RunRecord.open(dry_run).summary()["test"]
    assert metrics["bit_accuracy_mean"] == pytest.approx(summary["bit_accuracy_mean"])
    assert [pytest.approx(row) for row in summary["by_length"]] == metrics["by_length"]


def test_predict_prints_the_sum(dry_run, capsys):
    assert main(["predict", str(dry_run), "1011", "0110", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["true_sum"] == "10001" and result["true_sum_decimal"] == "17"
    assert len(result["model_sum"]) == 5 and set(result["model_sum"]) <= {"0", "1"}
    assert result["correct"] == (result["model_sum"] == "10001")
    assert main(["predict", str(dry_run), "1", "1"]) == 0
    text = capsys.readouterr().out
    assert "10" in text and "true sum" in text and ("right" in text or "wrong" in text)


@pytest.mark.parametrize("inputs", [["10a1", "0110"],
                                    ["", "1"],
                                    ["1"],
                                    ["1", "1", "1"],
                                    ["0b11", "1"],
                                    ["1 1", "0"],
                                    ["-1", "1"],
                                    ["1\n0", "1"],
                                    ["1" * 12, "1", "--max-length", "11"],
                                    ["1", "1", "--max-length", "0"]])
def test_bad_predict_inputs_are_one_line_errors(dry_run, capsys, inputs):
    assert main(["predict", str(dry_run), *inputs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and err.count("\n") == 1, err


def test_max_length_can_be_raised(dry_run, capsys):
    assert main(["predict", str(dry_run), "1" * 12, "1", "--max-length", "12", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["true_sum"] == "1" + "0" * 12


def test_bad_train_options_are_one_line_errors(tmp_path, capsys):
    for flags in (["--train-lengths", "5-3"], ["--eval-lengths", "x"], ["--hidden", "0"],
                  ["--loss", "ce"]):
        assert exit_code(["train", "addition", "--dry-run", "--out", str(tmp_path / "r"),
                          *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err


def test_comparison_figure_labels_follow_their_records(dry_run, tmp_path):
    other = tmp_path / "other"
    assert main(["train", "addition", "--dry-run", "--quiet", "--threads", "1", "--no-figures",
                 "--seed", "9", "--eval-lengths", "1-20,50", "--out", str(other)]) == 0
    runs = [("first", RunRecord.open(dry_run)), ("second", RunRecord.open(other))]
    fig = addition_study.accuracy_by_length_figure(runs)
    for ax, key in zip(fig.axes, ("bit_accuracy", "number_accuracy"), strict=True):
        for line, (label, record) in zip(ax.get_lines(), runs, strict=True):
            assert line.get_label() == label
            expected = [100 * r[key] for r in addition_study.by_length(record)]
            assert list(line.get_ydata()) == pytest.approx(expected)
    path = addition_study.draw_accuracy_by_length(runs, tmp_path / "cmp.png")
    assert path.stat().st_size > 1000
