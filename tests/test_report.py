"""The report builder on small fake run records written straight into tmp_path.

No training here: config.json, metrics.jsonl and summary.json are written by hand, so
every number the report shows can be checked against the record it came from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.core.document import Prose
from rnnlab.study import report as report_module
from rnnlab.study.report import build_report
from rnnlab.tasks.base import Flaw, Task
from rnnlab.tasks.registry import REGISTRY

ENV = {"rnnlab": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.7", "threads": 1,
       "device": "cpu", "platform": "Linux-test"}


def write_run(out: Path, rel: str, task: str, model: dict, task_config: dict, valid: list[float],
              test: dict | None, train: dict | None = None) -> None:
    """A run record: config.json, metrics.jsonl, and summary.json when ``test`` is given."""
    run = out / rel
    run.mkdir(parents=True)
    train = {"epochs": len(valid), "batch_size": 500, "lr": 0.01, "schedule": "constant",
             "clip": None, "seed": 2111, **(train or {})}
    (run / "config.json").write_text(json.dumps({"task": task, "model": model, "train": train,
                                                 "task_config": task_config}))
    rows = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": v,
             "valid_loss": 0.5 / (i + 1), "valid_accuracy": v} for i, v in enumerate(valid)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if test is not None:
        (run / "summary.json").write_text(json.dumps({
            "test": test, "epochs": len(valid), "best_epoch": len(valid), "train_seconds": 12.5,
            "wall_seconds": 14.25, "environment": ENV}))


def experiment(profile: str, task: str, name: str, label: str, seeds: list[int], reference=None,
               role: str = "main", **extra) -> dict:
    return {"id": f"{profile}/{task}/{name}", "profile": profile, "task": task, "name": name,
            "label": label, "role": role, "reference": reference, "seeds": seeds, "note": "",
            "runs": [f"runs/{profile}/{task}/{name}/seed-{s}" for s in seeds],
            "model": {"cell": "lstm", "hidden_size": 100}, "train": {"epochs": 2}, **extra}


MNIST_TASK = {"dataset": "mnist", "num_valid": 10_000, "augment_shift": 0, "limit": None}


def mnist_test(accuracy: float) -> dict:
    return {"accuracy": accuracy, "loss": 0.1, "examples": 10_000, "batch_size": 2000,
            "batch_losses": [0.1, 0.2, 0.1, 0.15, 0.12]}


def addition_test(bits: list[float], numbers: list[float]) -> dict:
    rows = [{"length": i + 1, "bit_accuracy": b, "number_accuracy": n}
            for i, (b, n) in enumerate(zip(bits, numbers, strict=True))]
    return {"accuracy": bits[0], "loss": 0.1, "pairs": 100,
            "bit_accuracy_mean": sum(bits) / len(bits),
            "number_accuracy_mean": sum(numbers) / len(numbers), "by_length": rows}


def write_runs_dir(out: Path) -> Path:
    lstm = {"cell": "lstm", "hidden_size": 100, "bidirectional": False}
    bilstm = {**lstm, "bidirectional": True}
    mnist = "runs/reference/mnist"
    write_run(out, f"{mnist}/lstm/seed-2111", "mnist", lstm, MNIST_TASK, [0.95, 0.97],
              mnist_test(0.9876))
    write_run(out, f"{mnist}/bilstm/seed-2111", "mnist", bilstm, MNIST_TASK, [0.96, 0.98],
              mnist_test(0.9799))
    write_run(out, f"{mnist}/bilstm-last-step/seed-2111", "mnist",
              {**bilstm, "readout": "last_step"}, MNIST_TASK, [0.90, 0.93], mnist_test(0.9312))
    # reference/mnist/rnn: nothing written at all; tuned/mnist/lstm seed 2113: interrupted
    # (no summary)
    tuned = "runs/tuned/mnist/lstm"
    write_run(out, f"{tuned}/seed-2111", "mnist", lstm, MNIST_TASK, [0.98, 0.99], mnist_test(0.99),
              {"batch_size": 128})
    write_run(out, f"{tuned}/seed-2112", "mnist", lstm, MNIST_TASK, [0.98, 0.99], mnist_test(0.98),
              {"batch_size": 128})
    write_run(out, f"{tuned}/seed-2113", "mnist", lstm, MNIST_TASK, [0.97], None,
              {"batch_size": 128})
    add_model = {"cell": "lstm", "hidden_size": 5}
    write_run(out, "runs/reference/addition/h5-bce/seed-2111", "addition", add_model,
              {"loss": "bce", "train_lengths": "1-20"}, [0.9],
              addition_test([1.0, 0.9, 0.8], [1.0, 0.5, 0.25]))
    write_run(out, "runs/reference/addition/h5-mse-len3/seed-2111", "addition", add_model,
              {"loss": "mse", "train_lengths": "3"}, [0.9],
              addition_test([0.5, 0.6, 1.0], [0.0, 0.1, 1.0]))
    manifest = {"format": "rnnlab-reproduce-v1", "profile": "all", "quick": False, "flaws": [
        {"id": "bidirectional-readout", "task": "mnist", "flaw": "Last-step readout.",
         "fix": "h_n."},
        {"id": "rnn-unclipped", "task": "mnist", "flaw": "Unclipped RNN.", "fix": "Clip."},
        {"id": "swapped-legends", "task": "addition", "flaw": "Swapped legends.",
         "fix": "From config."}],
        "experiments": [
            experiment("reference", "mnist", "rnn", "RNN", [2111], 87.02,
                       reference_curve=[80.13, 81.76]),
            experiment("reference", "mnist", "lstm", "LSTM", [2111], 98.11,
                       reference_curve=[95.54, 97.14]),
            experiment("reference", "mnist", "bilstm", "BiLSTM", [2111], 98.10),
            experiment("reference", "mnist", "bilstm-last-step", "BiLSTM, last-step readout",
                       [2111], 98.10, role="ablation", baseline="bilstm",
                       flaw="bidirectional-readout"),
            experiment("tuned", "mnist", "rnn", "RNN", [2111, 2112, 2113], 87.02, target=97.5),
            experiment("tuned", "mnist", "lstm", "LSTM", [2111, 2112, 2113], 98.11, target=99.0),
            experiment("reference", "addition", "h5-bce", "hidden 5, BCE", [2111], 100.0),
            experiment("reference", "addition", "h5-mse-len3", "hidden 5, MSE, trained on L = 3",
                       [2111], 92.08),
        ]}
    (out / "reproduce.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The fake folder and its report.md, built once for the tests that only read them."""
    out = write_runs_dir(tmp_path_factory.mktemp("report") / "repro")
    md_path, _ = build_report(out)
    return out, md_path.read_text()


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return write_runs_dir(tmp_path / "repro")


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the first table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r}")


def test_numbers_in_the_tables_are_the_records(built):
    _, md = built
    # columns: model | reference | reference settings | difference | tuned | difference | target
    assert table_row(md, "LSTM") == ["LSTM", "98.11", "98.76", "+0.65", "98.50 ± 0.71 (n=2 of 3)",
                                     "+0.39", "99.00 (not met)"]
    assert table_row(md, "BiLSTM")[2:4] == ["97.99", "-0.11"]
    assert table_row(md, "hidden 5, BCE")[1:5] == ["100.00", "90.00", "-10.00", "58.33"]
    assert table_row(md, "hidden 5, MSE, trained on L = 3")[2] == "70.00"


def test_a_missing_run_shows_as_missing_never_as_a_number(built):
    _, md = built
    row = table_row(md, "RNN")
    assert row[:4] == ["RNN", "87.02", "missing", "missing"]
    assert row[4] == "missing"  # no tuned RNN seed finished either
    assert not re.search(r"\d", row[2] + row[3] + row[4])
    assert "| reference/mnist/rnn | 2111 | missing | 0 | missing | missing |" in md
    assert "| tuned/mnist/lstm | 2113 | missing |" in md


def test_below_reference_is_said_plainly_with_the_test_set_noise(built):
    _, md = built
    line = next(line for line in md.splitlines() if line.startswith("- BiLSTM: rnnlab"))
    assert "0.11 points below the reference's 98.10%" in line
    assert "standard error of about 0.14 points" in line  # sqrt(.98 * .02 / 10000)


def test_a_fixed_length_addition_run_below_the_reference_says_it_never_saw_other_lengths(built):
    _, md = built
    line = next(line for line in md.splitlines()
                if line.startswith("- hidden 5, MSE, trained on L = 3: rnnlab"))
    assert "22.08 points below the reference's 92.08%" in line
    assert "trains on L = 3 only" in line
    assert "100.00% at L = 3, 55.00% on average over the others" in line
    assert "Trained on 1..20" not in line  # the mixed-length run is not in this folder


def test_seeds_that_disagree_are_listed_one_by_one(runs_dir):
    summary = runs_dir / "runs/tuned/mnist/lstm/seed-2112/summary.json"
    data = json.loads(summary.read_text())
    summary.write_text(json.dumps({**data, "test": mnist_test(0.95)}))
    md = build_report(runs_dir)[0].read_text()
    assert ("- LSTM, tuned: 99.00 (seed 2111), 95.00 (seed 2112). This recipe depends on the seed"
            in md)


def test_flaws_are_measured_from_the_ablation_records(built):
    _, md = built
    line = next(line for line in md.splitlines() if line.startswith("- BiLSTM: test accuracy"))
    assert "97.99% with h_n" in line and "reported 98.10% with its last-step readout" in line
    assert "put back: 93.12%" in line and "by +4.87 points" in line
    assert "Not measured" in next(line for line in md.splitlines() if "no clipping" in line)
    # legends come from each run's config.json
    assert '"LSTM hidden 5, MSE, trained on L = 3"' in md


def test_html_is_self_contained_with_embedded_figures(built):
    runs_dir, md = built
    page = (runs_dir / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) >= 5
    assert all(src.startswith("data:image/png;base64,") for src in images)
    for figure in re.findall(r"\]\((figures/[^)]+\.png)\)", md):
        assert (runs_dir / figure).stat().st_size > 1000, figure
    assert "<table>" in page and "<style>" in page and "98.76" in page


def test_environment_and_wall_time_come_from_the_summaries(built):
    _, md = built
    assert table_row(md, "0.1.0")[:5] == ["0.1.0", "2.13.0+cpu", "3.11.7", "1", "cpu"]
    assert "| reference/mnist/lstm | 2111 | finished | 2 | 12.5 | 14.2 |" in md


def test_a_corrupt_summary_is_missing_not_a_crash(runs_dir):
    (runs_dir / "runs/reference/mnist/lstm/seed-2111/summary.json").write_text("{not json")
    md = build_report(runs_dir)[0].read_text()
    assert table_row(md, "LSTM")[2] == "missing"


def test_report_command_rebuilds_and_refuses_a_folder_without_reproduce_json(runs_dir, tmp_path,
                                                                             capsys):
    assert main(["report", str(runs_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reproduce.json" in err[0]
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# -- generic code: tasks registered from outside, unknown tasks, no pointer outside -----
class ParityTask(Task):
    """A task registered from outside the package: it writes no section of its own."""

    name = "parity"
    title = "parity of a bit string"
    flaws = (Flaw("parity-shortcut", "parity", "Parity flaw.", "Parity fix.",
                  lambda report: [f"parity measured: {report.value(report.find(*SMALL))}"]),)


SMALL = ("reference", "parity", "small")


def add_experiments(out: Path, experiments: list[dict], flaws: list[dict]) -> None:
    manifest = json.loads((out / "reproduce.json").read_text())
    manifest["experiments"] += experiments
    manifest["flaws"] += flaws
    (out / "reproduce.json").write_text(json.dumps(manifest))


def write_small_runs(out: Path, task: str) -> list[dict]:
    """A reference experiment, a tuned one over two seeds, and an ablation of ``task``."""
    model = {"cell": "gru", "hidden_size": 8}
    write_run(out, f"runs/reference/{task}/small/seed-2111", task, model, {}, [0.8, 0.9],
              {"accuracy": 0.95, "loss": 0.1, "examples": 1000})
    for seed, accuracy in ((2111, 0.97), (2112, 0.99)):
        write_run(out, f"runs/tuned/{task}/small/seed-{seed}", task, model, {}, [0.9, 0.97],
                  {"accuracy": accuracy, "loss": 0.1, "examples": 1000})
    write_run(out, f"runs/reference/{task}/small-flawed/seed-2111", task, model, {}, [0.7, 0.6],
              {"accuracy": 0.9, "loss": 0.1, "examples": 1000})
    return [experiment("reference", task, "small", "GRU small", [2111], 90.0),
            experiment("tuned", task, "small", "GRU small", [2111, 2112], 90.0, target=98.0),
            experiment("reference", task, "small-flawed", "GRU small, flawed", [2111], None,
                       role="ablation", baseline="small", flaw=f"{task}-shortcut")]


def test_a_task_registered_from_outside_gets_the_generic_section(runs_dir, monkeypatch):
    monkeypatch.setattr(REGISTRY, "classes", dict(REGISTRY.classes))
    REGISTRY.register(ParityTask)
    add_experiments(runs_dir, write_small_runs(runs_dir, "parity"),
                    [ParityTask.flaws[0].describe()])
    md = build_report(runs_dir)[0].read_text()
    assert "## parity of a bit string" in md
    assert "Test accuracy (%) of each experiment" in md
    assert table_row(md, "GRU small") == ["GRU small", "90.00", "95.00", "+5.00",
                                          "98.00 ± 1.41 (n=2)", "+8.00", "98.00 (met)"]
    assert (runs_dir / "figures/parity_valid_accuracy.png").stat().st_size > 1000
    assert "](figures/parity_valid_accuracy.png)" in md
    # the flaw is explained by the registered Flaw object, not by the report
    assert "### Parity flaw." in md and "- parity measured: 95.0" in md
    # sections in registry order: the built-in tasks first, the registered one after them
    assert md.index("## Task 1") < md.index("## Task 3") < md.index("## parity")


def test_a_task_and_a_flaw_not_registered_are_listed_never_a_crash(runs_dir):
    add_experiments(runs_dir, write_small_runs(runs_dir, "sorting"), [
        {"id": "sorting-shortcut", "task": "sorting", "flaw": "Sorting flaw.", "fix": "Fix it.",
         "ablation": "small-flawed"},
        {"id": "sorting-unmeasured", "task": "sorting", "flaw": "Another flaw.", "fix": "Fix."},
        {"id": "elsewhere", "task": "nowhere", "flaw": "A flaw of no task here.", "fix": "-"}])
    md = build_report(runs_dir)[0].read_text()
    assert "## sorting" in md
    assert table_row(md, "GRU small")[:4] == ["GRU small", "90.00", "95.00", "+5.00"]
    # measured generically from its ablation: the fixed run against the flaw put back
    line = next(line for line in md.splitlines() if line.startswith("- GRU small: test accuracy"))
    assert "95.00% (fixed) vs 90.00% with the flaw put back" in line and "+5.00 points" in line
    assert "fell in 1 of 1 epoch transitions" in line
    section = md[md.index("### Another flaw."):]
    assert section.splitlines()[4].startswith('- Not explained here: the task "sorting"')
    assert "A flaw of no task here." not in md  # no experiments of that task in this folder


def test_the_report_points_nowhere_outside_its_folder(built):
    runs_dir, md = built
    page = (runs_dir / "report.html").read_text()
    assert "docs/exercise.md" in md
    for text in (md, page):
        assert "../" not in text and "shared/" not in text
    for target in re.findall(r"\]\(([^)]+)\)", md):  # every link and image
        assert not Path(target).is_absolute() and ".." not in Path(target).parts, target
        assert (runs_dir / target).is_file(), target


def test_every_flaw_explains_itself_or_names_its_ablation():
    for name in REGISTRY.names():
        for flaw in REGISTRY.get(name).flaws:
            assert flaw.task == name
            assert flaw.explain is not None or flaw.ablation, flaw.id
            assert set(flaw.describe()) == {"id", "task", "flaw", "fix", "ablation"}


def test_generic_report_code_names_no_task():
    source = Path(report_module.__file__).read_text()
    templates = (Path(report_module.__file__).parent / "templates").glob("*.j2")
    for text in [source, *(t.read_text() for t in templates)]:
        for name in REGISTRY.names():
            assert f'"{name}"' not in text and f"'{name}'" not in text


def test_prose_names_the_macros_it_has(tmp_path):
    path = tmp_path / "x.md.j2"
    path.write_text("{% macro hello(n) %}\n  Hello {{ n | pct }}\n  world.\n{% endmacro %}")
    prose = Prose(path)
    assert prose.say("hello", n=12.345) == "Hello 12.35 world."
    with pytest.raises(KeyError, match="hello"):
        prose.say("goodbye")
