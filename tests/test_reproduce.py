"""``rnnlab reproduce``: the experiment list, --quick end to end on the fake MNIST,
reuse of finished runs, and an interrupted reproduction completed by a rerun."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.core.records import RunRecord
from rnnlab.study.experiments import catalogue as all_experiments
from rnnlab.tasks.addition import study as addition_study
from rnnlab.tasks.base import QUICK_EPOCHS
from rnnlab.tasks.mnist import study as mnist_study
from rnnlab.tasks.recall import study as recall_study


def names(experiments, task, role="main"):
    return [e.name for e in experiments if e.task == task and e.role == role]


def test_reference_profile_lists_every_configuration_of_the_exercise():
    exps = all_experiments("reference", quick=False, seeds=3)
    assert names(exps, "mnist") == ["rnn", "lstm", "gru", "birnn", "bilstm", "bigru"]
    assert names(exps, "recall") == ["hidden-2", "hidden-5", "hidden-10"]
    assert names(exps, "addition") == ["h3-mse", "h10-mse", "h5-mse", "h5-bce", "h5-mse-len3",
                                       "h5-mse-len5", "h5-mse-len10"]
    assert all(e.seeds == (2111,) and e.profile == "reference" for e in exps)
    by_id = {(e.task, e.name): e for e in exps}
    for name, ref in mnist_study.REFERENCE.items():
        assert by_id["mnist", name].reference == (ref["test"] if ref else None)
    for name, ref in addition_study.REFERENCE.items():
        assert by_id["addition", name].reference == ref
    assert by_id["recall", "hidden-10"].reference == recall_study.REFERENCE[10]
    lstm = by_id["mnist", "lstm"]
    assert (lstm.train.epochs, lstm.train.batch_size, lstm.train.lr,
            lstm.model.hidden_size) == (7, 500, 0.01, 100)
    recall = by_id["recall", "hidden-5"]
    assert (recall.train.epochs, recall.train.batch_size, recall.train.lr) == (10, 1, 0.002)
    assert (recall.task_config["train_size"], recall.task_config["k"]) == (800, 1)
    len3 = by_id["addition", "h5-mse-len3"]
    assert (len3.task_config["train_lengths"], len3.task_config["loss"],
            len3.model.hidden_size) == ("3", "mse", 5)
    assert (len3.train.epochs, len3.train.batch_size, len3.train.lr) == (5, 1, 0.01)


def test_ablations_put_each_flaw_back_and_can_be_left_out():
    exps = all_experiments("reference", quick=False, seeds=1)
    ablations = {e.name: e for e in exps if e.role == "ablation"}
    assert {"birnn-last-step", "bilstm-last-step", "rnn-no-clip"} <= set(ablations)
    assert ablations["bilstm-last-step"].model.readout == "last_step"
    assert ablations["bilstm-last-step"].baseline == "bilstm"
    assert ablations["rnn-no-clip"].train.clip is None
    assert {e.name: e for e in exps}["rnn"].train.clip == 1.0
    assert not [e for e in all_experiments("reference", False, 1, ablations=False)
                if e.role == "ablation"]
    assert not [e for e in all_experiments("tuned", False, 1) if e.role == "ablation"]


def test_tuned_profile_runs_several_seeds_with_targets():
    exps = all_experiments("tuned", quick=False, seeds=3, first_seed=10)
    assert all(e.seeds == (10, 11, 12) for e in exps)
    targets = {(e.task, e.name): e.target for e in exps}
    assert targets["mnist", "lstm"] == mnist_study.TUNED_TARGETS["lstm"]
    assert targets["recall", "hidden-10"] == recall_study.TUNED_TARGETS[10]
    addition = [e for e in exps if e.task == "addition"]
    assert len(addition) == 1 and addition[0].task_config["loss"] == "bce"
    assert addition[0].task_config["data"] == "fresh"


def test_quick_shrinks_every_configuration():
    for e in all_experiments("all", quick=True, seeds=2):
        assert e.train.epochs == QUICK_EPOCHS, e.id
        if e.task == "mnist":
            assert e.task_config["limit"] is not None
        else:
            assert e.task_config["train_size"] <= 1000, e.id


def test_every_registered_task_lists_experiments_of_both_profiles():
    from rnnlab.tasks.registry import REGISTRY

    for name in ("mnist", "recall", "addition"):
        task = REGISTRY.get(name)
        for profile in ("reference", "tuned"):
            assert {e.task for e in task.experiments(profile, (1,), True)} == {name}


def summaries(out: Path) -> list[Path]:
    return sorted(out.glob("runs/**/summary.json"))


@pytest.mark.slow
def test_quick_reproduction_end_to_end_then_everything_is_reused(fake_mnist, tmp_path, capsys):
    out = tmp_path / "repro"
    args = ["reproduce", "--quick", "--out", str(out), "--threads", "1", "--quiet", "--no-figures"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "reproduce.json").read_text())
    runs = [r for e in manifest["experiments"] for r in e["runs"]]
    listed = all_experiments("reference", quick=True, seeds=1)
    assert len(runs) == len(listed) >= 16 + 3  # + ablations
    assert all(RunRecord(out / r).is_complete for r in runs)
    assert f"{len(runs)} run(s) trained, 0 reused" in printed
    md = (out / "report.md").read_text()
    assert "missing" not in md
    for section in ("Task 1", "Task 2", "Task 3", "flaws", "Environment"):
        assert section in md
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 12
    before = {p: p.stat().st_mtime_ns for p in summaries(out)}
    assert main(args) == 0
    assert f"0 run(s) trained, {len(runs)} reused" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in summaries(out)}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_reproduction_completes_on_rerun_without_redoing_runs(fake_mnist, tmp_path,
                                                                          capsys, signum):
    out = tmp_path / "repro"
    args = ["reproduce", "--quick", "--tasks", "mnist", "--no-ablations", "--out", str(out),
            "--threads", "1", "--quiet", "--no-figures"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not summaries(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1]
    finished = {p: p.stat().st_mtime_ns for p in summaries(out)}
    assert 1 <= len(finished) < 6
    assert not list(out.glob("runs/**/.*.tmp"))  # no half-written file left behind
    for config in out.glob("runs/**/config.json"):  # every record readable
        RunRecord.open(config.parent).metrics()

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"{6 - len(finished)} run(s) trained, {len(finished)} reused" in printed
    assert finished == {p: p.stat().st_mtime_ns for p in finished}  # finished runs untouched
    assert len(summaries(out)) == 6
    for summary in summaries(out):
        assert len(RunRecord(summary.parent).metrics()) == QUICK_EPOCHS
    assert "missing" not in (out / "report.md").read_text()


def worker_pids(parent: int) -> list[int]:
    """The pool workers (multiprocessing spawn children) of process ``parent``, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                    reason="reads the process table from /proc")
def test_kill_9_of_a_parallel_reproduction_leaves_no_worker_training(fake_mnist, tmp_path, capsys):
    """Workers die with their parent, so the rerun is the only writer of every run folder."""
    out = tmp_path / "repro"
    args = ["reproduce", "--quick", "--tasks", "mnist", "--no-ablations", "--out", str(out),
            "--jobs", "2", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", *args],
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not summaries(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = worker_pids(proc.pid)
    assert len(workers) == 2 and proc.poll() is None, \
        "the reproduction ended before it could be killed"
    proc.kill()
    proc.wait()
    # with the kernel's parent-death signal they are gone in milliseconds; an orphan would
    # train on to the end of its run (about 2 s here), then fail to report back
    deadline = time.monotonic() + 1.0
    while any(map(is_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(is_alive, workers)), "a worker outlived its killed parent"

    assert main(args) == 0
    assert len(summaries(out)) == 6
    for summary in summaries(out):
        record = RunRecord(summary.parent)
        assert len(record.metrics()) == QUICK_EPOCHS and record.figures_drawn
    assert not list(out.glob("runs/**/.*.tmp"))


def test_a_reused_run_whose_figures_were_cut_short_gets_them_drawn(fake_mnist, tmp_path, capsys):
    out = tmp_path / "repro"
    args = ["reproduce", "--quick", "--tasks", "addition", "--no-ablations", "--out", str(out),
            "--quiet"]
    assert main(args) == 0
    record = RunRecord(summaries(out)[0].parent)
    drawn = sorted(p.name for p in record.figures_dir.glob("*.png"))
    assert drawn and record.figures_drawn
    for png in record.figures_dir.glob("*.png"):  # as if killed while drawing them
        png.unlink()
    (record.figures_dir / ".drawn").unlink()
    before = summaries(out)[0].stat().st_mtime_ns
    assert main(args) == 0
    assert "0 run(s) trained" in capsys.readouterr().out
    assert (sorted(p.name for p in record.figures_dir.glob("*.png")) == drawn
            and record.figures_drawn)
    assert summaries(out)[0].stat().st_mtime_ns == before  # reused, not retrained


def test_profiles_accumulate_and_other_settings_are_refused(tmp_path, capsys):
    out = tmp_path / "repro"
    base = ["reproduce", "--tasks", "recall", "--out", str(out), "--threads", "1", "--quiet",
            "--no-figures"]
    assert main([*base, "--quick"]) == 0
    assert main([*base, "--quick", "--profile", "tuned", "--seeds", "2"]) == 0
    manifest = json.loads((out / "reproduce.json").read_text())
    assert {e["profile"] for e in manifest["experiments"]} == {"reference", "tuned"}
    md = (out / "report.md").read_text()
    assert "(n=2)" in md and "missing" not in md
    capsys.readouterr()
    assert main(base) == 2  # the full budget would silently reuse --quick runs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made with other settings" in err[0] and "force" in err[0]


def test_one_reproduction_per_folder(tmp_path, capsys):
    out = tmp_path / "repro"
    out.mkdir()
    with open(out / ".reproduce.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["reproduce", "--quick", "--tasks", "recall", "--out", str(out),
                     "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another rnnlab reproduce" in err[0]


def test_parallel_jobs_train_the_same_runs_as_one_process(tmp_path, capsys):
    """--jobs 2 trains in worker processes; the records equal a sequential reproduction's."""
    args = ["reproduce", "--quick", "--tasks", "addition", "--no-ablations", "--quiet",
            "--no-figures"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    one = sorted((tmp_path / "one").glob("runs/**/metrics.csv"))
    two = sorted((tmp_path / "two").glob("runs/**/metrics.csv"))
    assert len(one) == len(two) > 1
    for a, b in zip(one, two, strict=True):
        assert a.relative_to(tmp_path / "one") == b.relative_to(tmp_path / "two")
        assert a.read_bytes() == b.read_bytes()
    assert main([*args, "--jobs", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "jobs must be >= 1" in capsys.readouterr().err
