"""Run folders are never overwritten by accident, and a damaged one is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.cli import main

RECALL = ["train", "recall", "--hidden", "3", "--train-size", "16", "--valid-size", "8",
          "--test-size", "8", "--batch-size", "8", "--epochs", "1", "--threads", "1", "--quiet",
          "--no-figures"]
ADDITION = ["train", "addition", "--hidden", "3", "--train-size", "16", "--test-pairs", "4",
            "--eval-lengths", "2", "--eval-pairs", "2", "--batch-size", "8", "--epochs", "1",
            "--threads", "1", "--quiet", "--no-figures"]


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("rnnlab: error: "), err
    return err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv,run_dir", [(RECALL, "hidden-3"), (ADDITION, "")],
                         ids=["recall", "addition"])
def test_an_existing_run_is_not_overwritten_without_force(argv, run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 0
    before = snapshot(out)
    err = one_line_error([*argv, "--seed", "9", "--out", str(out)], capsys)
    assert "already exists; set --force to overwrite it or --resume to continue it" in err
    assert snapshot(out) == before  # not a byte, not a timestamp changed
    assert main([*argv, "--seed", "9", "--out", str(out), "--force"]) == 0
    old_config = before[str(Path(run_dir, "config.json"))][0].decode()
    assert (out / run_dir / "config.json").read_text() != old_config


def test_a_folder_holding_other_files_is_not_a_place_for_a_run(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "hidden-3").mkdir(parents=True)
    (out / "hidden-3" / "notes.txt").write_text("do not lose me")
    assert "already exists" in one_line_error([*RECALL, "--out", str(out)], capsys)
    assert main([*RECALL, "--out", str(out), "--force"]) == 0
    # --force deletes only its own
    assert (out / "hidden-3" / "notes.txt").read_text() == "do not lose me"


def test_a_damaged_config_json_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ADDITION, "--out", str(out)]) == 0
    (out / "config.json").write_text('{"task": "addi')
    assert "config.json is not valid JSON" in one_line_error(["evaluate", str(out)], capsys)
    resume = [*ADDITION, "--out", str(out), "--resume"]
    assert "config.json is not valid JSON" in one_line_error(resume, capsys)


def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ADDITION, "--out", str(out)]) == 0
    (out / "config.json").write_text("[1, 2]")
    assert "config.json is not a JSON object" in one_line_error(["evaluate", str(out)], capsys)
    resume = [*ADDITION, "--out", str(out), "--resume"]
    assert "config.json is not a JSON object" in one_line_error(resume, capsys)
    (out / "config.json").write_text('{"model": [], "train": {}}')
    assert "not an rnnlab run config" in one_line_error(resume, capsys)


def test_resume_reads_fields_a_record_predates_as_their_defaults(tmp_path, capsys):
    """One rule for "same settings" in train --resume and in reproduce's up-front check."""
    out = tmp_path / "run"
    argv = [*ADDITION, "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    del config["model"]["readout"], config["train"]["backend"]  # as written before those existed
    (out / "config.json").write_text(json.dumps(config))
    assert main([*argv, "--resume"]) == 0


def test_paths_the_system_refuses_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("keep me\n")
    err = one_line_error([*RECALL, "--out", str(a_file / "run")], capsys)
    assert "Not a directory" in err and str(a_file) in err
    err = one_line_error(["reproduce", "--quick", "--tasks", "addition", "--out", str(a_file)],
                         capsys)
    assert "File exists" in err and str(a_file) in err
    assert a_file.read_text() == "keep me\n"


@pytest.mark.parametrize("argv,run_dir", [(RECALL, "hidden-3"), (ADDITION, "")],
                         ids=["recall", "addition"])
def test_force_leaves_nothing_of_the_previous_run(argv, run_dir, tmp_path, capsys):
    from rnnlab.core.records import RunRecord

    out = tmp_path / "run"
    with_figures = [a for a in argv if a != "--no-figures"]
    assert main([*with_figures, "--out", str(out)]) == 0
    run = out / run_dir
    assert RunRecord(run).figures_drawn and list((run / "figures").glob("*.png"))
    made = {p.name for p in run.iterdir() if p.is_file()}
    assert main([*argv, "--out", str(out), "--force", "--epochs", "2", "--seed", "7"]) == 0
    assert not RunRecord(run).figures_drawn and not list((run / "figures").glob("*.png"))
    assert {p.name for p in run.iterdir() if p.is_file()} == made  # each rewritten by the new run
    assert len(RunRecord(run).metrics()) == 2
