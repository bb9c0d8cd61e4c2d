"""The report of a sweep folder: written at the end of ``rnnlab sweep`` and by ``rnnlab report
OUT``, from sweep.json and the trials' records; Optuna's importances or the sentence why not;
and ``rnnlab.sweep`` / ``rnnlab.sweep_status`` from Python."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import rnnlab
from rnnlab.cli import main
from rnnlab.study import sweep_report
from rnnlab.study.sweep import sweep_status
from rnnlab.study.sweep_report import load_sweep, param_importances
from rnnlab.tasks.registry import REGISTRY
from test_sweep import SPACE, TINY

pytest.importorskip("optuna")

PARAMS = ("hidden", "lr", "batch_size")  # SPACE's parameters


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A finished 4-trial sweep on a tiny budget (one worker, no pruning)."""
    out = tmp_path_factory.mktemp("sweep-report") / "sweep"
    assert main(["sweep", "recall", "--trials", "4", "--pruner", "none", "--no-figures",
                 "--seed", "3", "--out", str(out), *SPACE, *TINY]) == 0
    return out


def section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}")
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start:end]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|--")]


def test_the_sweep_writes_its_report_with_the_best_settings(swept):
    md = (swept / "report.md").read_text()
    status = sweep_status(swept)
    assert status.best is not None
    best = section(md, "The best trial")
    assert f"Trial {status.best.number} has the best valid_accuracy" in best
    assert "trials/trial-" in best and str(swept) not in best  # a path inside the folder
    settings = dict(row for row in table_rows(best)[1:])
    assert set(settings) == set(PARAMS)
    assert settings["hidden"] == str(status.best.params["hidden"])
    assert float(settings["lr"]) == pytest.approx(status.best.params["lr"], rel=1e-3)
    trials = table_rows(section(md, "Trials"))
    assert trials[0][:2] == ["trial", "state"] and set(trials[0][2:5]) == set(PARAMS)
    assert len(trials) == 5
    assert "password" not in md and "4 complete" in md


def test_importances_are_a_table_or_one_sentence_why_not(swept):
    part = section((swept / "report.md").read_text(), "How much each parameter matters")
    rows = table_rows(part)
    if rows:
        assert rows[0] == ["parameter", "importance"]
        assert {row[0] for row in rows[1:]} == set(PARAMS)
        assert sum(float(row[1]) for row in rows[1:]) == pytest.approx(1.0, abs=0.01)
    else:
        assert "Parameter importances are not shown" in part


def test_importances_say_why_they_are_missing(swept):
    records = load_sweep(swept)
    one = dataclasses.replace(records, trials=records.trials[:1])
    assert param_importances(one) == (None, sweep_report.PROSE.say("importance_too_few",
                                                                   complete=1))
    same = [dataclasses.replace(t, params=records.trials[0].params) for t in records.trials]
    found, why = param_importances(dataclasses.replace(records, trials=same))
    assert found is None and "all have the same parameters" in why
    gone = dataclasses.replace(records, default_storage=False,
                               storage="postgresql://127.0.0.1:1/nowhere")
    found, why = param_importances(gone)
    assert found is None and why.startswith("Parameter importances are not shown: Optuna could")
    assert "\n" not in why


def test_one_figure_per_parameter_embedded_in_the_html(swept):
    page = (swept / "report.html").read_text()
    md = (swept / "report.md").read_text()
    for name in PARAMS:
        assert (swept / "figures" / f"param_{name}.png").stat().st_size > 1000
        assert f"](figures/param_{name}.png)" in md
        assert re.search(rf'<img alt="valid_accuracy against {name}[^"]*" '
                         r'src="data:image/png;base64,', page), name
    assert "valid_accuracy against lr (log scale)" in md  # the spec's log scale
    assert (swept / "figures" / "best_valid_accuracy.png").is_file()
    assert 'src="figures/' not in page  # self-contained
    records = load_sweep(swept)
    assert [records.kind(n) for n in PARAMS] == ["int", "log", "choice"]


def test_the_report_command_rebuilds_a_sweep_report(swept, capsys):
    (swept / "report.md").unlink()
    assert main(["report", str(swept), "--dry-run"]) == 0
    assert "4 trial record(s)" in capsys.readouterr().out
    assert not (swept / "report.md").exists()
    assert main(["report", str(swept)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (swept / "report.md").is_file()


def test_the_sweep_report_code_names_no_task():
    source = Path(sweep_report.__file__).read_text()
    template = (Path(sweep_report.__file__).parent / "templates" / "sweep.md.j2").read_text()
    for text in (source, template):
        for name in REGISTRY.names():
            assert f'"{name}"' not in text and f"'{name}'" not in text


def test_the_api_sweeps_and_its_best_is_the_status_best(tmp_path):
    fixed = {"data": "fresh", "epochs": 2, "train_size": 512, "valid_size": 256,
             "test_size": 256}
    result = rnnlab.sweep("recall", trials=3, params={"hidden": "int:4:12",
                                                      "lr": "log:3e-3:3e-2"},
                          fixed=fixed, out=tmp_path / "api", pruner="none", seed=5)
    status = rnnlab.sweep_status(tmp_path / "api")
    assert result.status.states["complete"] == 3 == status.states["complete"]
    assert result.status.best is not None and status.best is not None
    assert (result.status.best.number, result.status.best.params) == (
        status.best.number, status.best.params)
    assert (tmp_path / "api" / "report.html").is_file()
