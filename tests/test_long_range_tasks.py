"""The long-range tasks: the adding problem and copy memory. Generation against plain-Python
references, seeds, objectives on hand-made cases, the memoryless baselines, and train,
evaluate and predict through the command line on a dry run."""

import json
import math

import pytest
import torch

from rnnlab.cli import main
from rnnlab.core.errors import ConfigError
from rnnlab.core.records import RunRecord
from rnnlab.core.train import Batch
from rnnlab.tasks.adding_problem import data as adding
from rnnlab.tasks.copy_memory import data as copying
from rnnlab.tasks.registry import REGISTRY, TaskRegistry

torch.set_num_threads(1)


# -- the adding problem -----------------------------------------------------------------
def python_sums(x: torch.Tensor) -> list[float]:
    """The sum of the marked values of each (T, 2) sequence, one step at a time."""
    return [sum(value for value, marker in row.tolist() if marker == 1.0) for row in x]


def test_adding_sequences_have_one_marker_per_half_and_sum_the_marked_values():
    for length in (2, 3, 7, 200):
        data = adding.generate(500, length, torch.Generator().manual_seed(length))
        batch = data.batch(slice(None))
        assert batch.x.shape == (500, length, 2) and batch.lengths is None
        markers = batch.x[:, :, 1]
        assert set(markers.unique().tolist()) <= {0.0, 1.0}
        half = length // 2
        assert (markers[:, :half].sum(dim=1) == 1).all()
        assert (markers[:, half:].sum(dim=1) == 1).all()
        assert ((batch.x[:, :, 0] >= 0) & (batch.x[:, :, 0] < 1)).all()
        assert batch.y.tolist() == pytest.approx(python_sums(batch.x), abs=1e-6)


def test_adding_sets_are_reproducible_and_each_stream_its_own():
    cfg = adding.AddingConfig(length=20, valid_size=50, test_size=60)
    a, b, c = adding.make_splits(cfg, 7), adding.make_splits(cfg, 7), adding.make_splits(cfg, 8)
    assert torch.equal(a.test.values, b.test.values) and torch.equal(a.test.marked, b.test.marked)
    assert not torch.equal(a.test.values, c.test.values)
    assert not torch.equal(a.valid.values, a.test.values[:50])
    first = list(adding.FreshBatches(20, 100, 32, seed=3).epoch_batches(1))
    again = list(adding.FreshBatches(20, 100, 32, seed=3).epoch_batches(1))
    later = list(adding.FreshBatches(20, 100, 32, seed=3).epoch_batches(2))
    assert [len(batch) for batch in first] == [32, 32, 32, 4]
    assert all(torch.equal(p.x, q.x) for p, q in zip(first, again, strict=True))
    assert not torch.equal(first[0].x, later[0].x)


def test_adding_objective_is_the_mean_squared_error_and_counts_close_answers():
    batch = Batch(torch.zeros(3, 4, 2), torch.tensor([1.0, 0.5, 1.5]))
    output = torch.tensor([[1.1], [0.0], [1.5]])  # squared errors 0.01, 0.25, 0
    result = adding.SquaredErrorObjective()(output, batch)
    assert float(result.loss) == pytest.approx((0.01 + 0.25 + 0) / 3)
    assert (result.items, result.correct) == (3, 2)


def test_adding_baseline_always_one_scores_about_a_sixth():
    test = adding.make_splits(adding.AddingConfig(length=50), 2111).test  # 10,000 sequences
    assert len(test) == 10_000
    assert adding.baseline_mse(test.y) == pytest.approx(1 / 6, abs=0.01)
    assert adding.baseline_mse(torch.tensor([0.0, 2.0])) == 1.0


@pytest.mark.parametrize("settings, message", [
    ({"length": 1}, r"length must be in 2\.\.100000"),
    ({"test_size": 0}, "test_size must be >= 1"),
])
def test_adding_bad_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        adding.AddingConfig(**settings)


# -- copy memory ----------------------------------------------------------------------------
def python_copy_sequence(symbols: list[int], delay: int) -> tuple[list[int], list[int]]:
    """Arjovsky et al.'s layout, written out: (input classes, target classes)."""
    inputs = symbols + [0] * (delay - 1) + [9] + [0] * 10
    targets = [0] * (delay + 10) + symbols
    return inputs, targets


def test_copy_sequences_follow_the_papers_layout():
    for delay in (1, 2, 30):
        symbols = copying.draw_symbols(40, torch.Generator().manual_seed(delay))
        assert ((symbols >= 1) & (symbols <= 8)).all()
        batch = copying.encode(symbols, delay)
        assert batch.x.shape == (40, delay + 20, 10) and batch.y.shape == (40, delay + 20)
        assert (batch.x.sum(dim=-1) == 1).all()  # one-hot at every step
        for row in range(40):
            inputs, targets = python_copy_sequence(symbols[row].tolist(), delay)
            assert batch.x[row].argmax(dim=-1).tolist() == inputs
            assert batch.y[row].tolist() == targets


def test_copy_sets_are_reproducible_and_fresh_each_epoch():
    cfg = copying.CopyConfig(delay=5, valid_size=30, test_size=30)
    a, b = copying.make_splits(cfg, 1), copying.make_splits(cfg, 1)
    assert torch.equal(a.test.symbols, b.test.symbols)
    assert not torch.equal(a.valid.symbols, a.test.symbols)
    assert not torch.equal(a.test.symbols, copying.make_splits(cfg, 2).test.symbols)
    first = next(copying.FreshBatches(5, 64, 16, seed=3).epoch_batches(1))
    assert torch.equal(first.x, next(copying.FreshBatches(5, 64, 16, seed=3).epoch_batches(1)).x)
    assert not torch.equal(first.x, next(copying.FreshBatches(5, 64, 16, seed=3)
                                         .epoch_batches(2)).x)


def test_copy_objective_scores_every_step_and_counts_recalled_symbols():
    symbols = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 1, 2]])
    batch = copying.encode(symbols, 3)  # 23 steps
    logits = torch.full((1, 23, 10), -20.0)
    logits[0, torch.arange(23), batch.y[0]] = 20.0  # sure of every right class
    logits[0, -1] = 0.0  # the last recalled step: uniform, so argmax 0 (wrong)
    result = copying.CopyObjective()(logits, batch)
    assert (result.items, result.correct) == (10, 9)
    assert float(result.loss) == pytest.approx(math.log(10) / 23, abs=1e-4)


def test_copy_memoryless_baseline_is_10_log_8_over_t_plus_20():
    delay = 100
    assert copying.baseline_loss(delay) == pytest.approx(10 * math.log(8) / 120)
    batch = copying.encode(torch.randint(1, 9, (200, 10)), delay)
    logits = torch.full((200, 120, 10), -1e4)
    logits[:, : delay + 10, 0] = 0.0  # blanks, surely
    logits[:, delay + 10 :, 1:9] = 0.0  # then a uniform guess among the 8 symbols
    loss = copying.CopyObjective()(logits, batch).loss
    assert float(loss) == pytest.approx(copying.baseline_loss(delay), rel=1e-5)


def test_copy_bad_delay_is_refused():
    with pytest.raises(ConfigError, match=r"delay must be in 1\.\.100000"):
        copying.CopyConfig(delay=0)


# -- the registry and the command line --------------------------------------------------
def test_hyphenated_names_register_and_others_do_not():
    assert {"adding-problem", "copy-memory"} <= set(REGISTRY.names())
    bad = type("Bad", (REGISTRY.get("copy-memory"),), {"name": "copy memory"})
    with pytest.raises(ValueError, match="must be an identifier"):
        TaskRegistry((bad,))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One dry-run of each task, trained once for the module's command tests."""
    out = tmp_path_factory.mktemp("long-range")
    for task, flags in (("adding-problem", ["--length", "12"]), ("copy-memory", ["--delay", "5"])):
        assert main(["train", task, *flags, "--dry-run", "--hidden", "8", "--quiet",
                     "--threads", "1", "--out", str(out / task)]) == 0
    return out


def test_dry_runs_leave_records_summaries_and_figures(runs):
    record = RunRecord.open(runs / "adding-problem")
    test = record.summary()["test"]
    assert {"mse", "baseline_mse", "accuracy", "examples"} <= set(test)
    assert test["mse"] == test["loss"] and 0 < test["baseline_mse"] < 1
    examples = json.loads((record.dir / "examples.json").read_text())
    assert examples["length"] == 12 and len(examples["examples"]) == test["examples"]
    for name in ("loss_curves", "valid_accuracy", "predicted_sums"):
        assert (record.figures_dir / f"{name}.png").is_file()
    record = RunRecord.open(runs / "copy-memory")
    test = record.summary()["test"]
    assert test["baseline_loss"] == pytest.approx(10 * math.log(8) / 25)
    assert len(test["by_position"]) == 10 and 0 <= test["sequence_accuracy"] <= test["accuracy"]
    for name in ("loss_curves", "valid_accuracy", "accuracy_by_position"):
        assert (record.figures_dir / f"{name}.png").is_file()


def test_evaluate_recomputes_the_summaries(runs, capsys):
    for task in ("adding-problem", "copy-memory"):
        assert main(["evaluate", str(runs / task), "--json", "--threads", "1"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics == RunRecord.open(runs / task).summary()["test"]


def test_predict_answers_a_sum_and_a_recalled_sequence(runs, capsys):
    assert main(["predict", str(runs / "adding-problem"), "0.25@1", "0.5@9"]) == 0
    assert "(true sum 0.7500 of steps 1 and 9" in capsys.readouterr().out
    steps = ["0.1", "0.7*", "0.3", "0.2", "0.4", "0.9*"] + ["0.5"] * 6
    assert main(["predict", str(runs / "adding-problem"), *steps, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["marked"] == [1, 5] and answer["sum"] == pytest.approx(1.6)
    assert main(["predict", str(runs / "copy-memory"), "3141526535", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["symbols"] == [3, 1, 4, 1, 5, 2, 6, 5, 3, 5] and len(answer["recalled"]) == 10
    assert main(["predict", str(runs / "copy-memory"), *list("3141526535")]) == 0
    assert "right; given 3 1 4 1 5 2 6 5 3 5, delay 5)" in capsys.readouterr().out


@pytest.mark.parametrize("task, inputs, message", [
    ("adding-problem", ["0.25@1"], "give two marked values as VALUE@STEP"),
    ("adding-problem", ["0.25@1", "0.5@12"], "is not a zero-based step of 0..11"),
    ("adding-problem", ["0.25@3", "0.5@3"], "step 3 is marked twice"),
    ("adding-problem", ["x@1", "0.5@9"], "value 'x' is not a number"),
    ("adding-problem", ["0.1", "0.7*", "0.3"], "mark exactly two steps with *"),
    ("copy-memory", ["31415"], "give exactly 10 symbols in 1..8"),
    ("copy-memory", ["3141592653"], "'9' is not a symbol"),
])
def test_bad_predict_inputs_are_one_line_errors(runs, capsys, task, inputs, message):
    assert main(["predict", str(runs / task), *inputs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("task, flags, message", [
    ("adding-problem", ["--length", "1"], "--length must be in 2..100000"),
    ("adding-problem", ["--train-size", "0"], "--train-size must be >= 1"),
    ("copy-memory", ["--delay", "0"], "--delay must be in 1..100000"),
    ("copy-memory", ["--valid-size", "-3"], "--valid-size must be >= 1"),
])
def test_bad_settings_are_one_line_errors(tmp_path, capsys, task, flags, message):
    assert main(["train", task, *flags, "--dry-run", "--quiet", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_the_delay_grid_stops_solved_runs_and_reports_the_steps_they_took(tmp_path,
                                                                          monkeypatch):
    """The long-range profile on two cells and two short delays, quick: with a rule every
    run meets after its first epoch, each run stops there, and the report's table marks
    every cell solved with the steps it took."""
    from dataclasses import replace

    from rnnlab.study.reproduce import ReproduceOptions, reproduce
    from rnnlab.tasks import delays
    from rnnlab.tasks.adding_problem import study

    grid = study.GRID
    monkeypatch.setattr(delays, "DELAYS", (6, 9))
    monkeypatch.setattr(delays, "cell_names", lambda: ("rnn", "lstm"))
    monkeypatch.setattr(study, "GRID", replace(
        grid, model=replace(grid.model, hidden_size=8), solved=lambda mse: mse < 10,
        train=replace(grid.train, stop_when="loss<10")))
    reproduce(ReproduceOptions(profile="long-range", quick=True, tasks=("adding-problem",),
                               out=str(tmp_path), threads=1, quiet=True, figures=False))
    runs = sorted((tmp_path / "runs" / "long-range" / "adding-problem").glob("*/seed-*"))
    assert [r.parent.name for r in runs] == ["lstm-T6", "lstm-T9", "rnn-T6", "rnn-T9"]
    for run in runs:
        record = RunRecord.open(run)
        assert record.summary()["epochs"] == 1 < record.config()["train"]["epochs"]
    config = RunRecord.open(runs[0]).config()
    steps = config["task_config"]["train_size"] // config["train"]["batch_size"]
    table = [line for line in (tmp_path / "report.md").read_text().splitlines()
             if line.startswith("| RNN") or line.startswith("| LSTM")]
    assert len(table) == 2 and all(line.count(f"✓ ({steps:,} steps)") == 2 for line in table)


def test_the_copy_grid_sets_each_runs_loss_beside_the_memoryless_baseline(tmp_path,
                                                                          monkeypatch):
    """The copy-memory grid's second table: each run's test cross-entropy, as its record
    has it, and a last row with the baseline's 10 log 8 / (T + 20)."""
    import math
    from dataclasses import replace

    from rnnlab.study.reproduce import ReproduceOptions, reproduce
    from rnnlab.tasks import delays
    from rnnlab.tasks.copy_memory import study

    grid = study.GRID
    monkeypatch.setattr(delays, "DELAYS", (6, 9))
    monkeypatch.setattr(delays, "cell_names", lambda: ("gru",))
    monkeypatch.setattr(study, "GRID", replace(grid, model=replace(grid.model, hidden_size=8)))
    reproduce(ReproduceOptions(profile="long-range", quick=True, tasks=("copy-memory",),
                               out=str(tmp_path), threads=1, quiet=True, figures=False))
    losses = [RunRecord.open(run).summary()["test"]["loss"] for run in sorted(
        (tmp_path / "runs" / "long-range" / "copy-memory").glob("gru-T*/seed-*"))]
    lines = (tmp_path / "report.md").read_text().splitlines()
    gru = [line for line in lines if line.startswith("| GRU")]
    assert len(gru) == 2  # the accuracy table's row, then the loss table's
    assert gru[1].startswith(f"| GRU | {losses[0]:.4f} | {losses[1]:.4f} |")
    baseline = next(line for line in lines if line.startswith("| baseline"))
    expected = [f"{10 * math.log(8) / (t + 20):.4f}" for t in (6, 9)]
    assert baseline.startswith(f"| baseline | {expected[0]} | {expected[1]} |")
