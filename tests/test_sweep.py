"""``rnnlab sweep``: search-space parsing, journal sweeps with worker processes, a worker
killed mid-trial, two processes sharing a real PostgreSQL server, and bad storage URLs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.core.errors import ConfigError
from rnnlab.study.sweep import (
    Param,
    SweepOptions,
    parse_param,
    prepare_study,
    read_space_file,
    search_space,
    storage_spec,
    sweep_status,
)
from rnnlab.tasks.registry import REGISTRY

optuna = pytest.importorskip("optuna")

RECALL = REGISTRY.get("recall")
RNNLAB = [sys.executable, "-m", "rnnlab"]
TINY = ["--set", "data=fresh", "--set", "epochs=2", "--set", "train_size=512",
        "--set", "valid_size=256", "--set", "test_size=256"]
SPACE = ["--param", "hidden=int:4:12", "--param", "lr=log:3e-3:3e-2",
         "--param", "batch_size=choice:32,64"]
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


# -- the search space ------------------------------------------------------------------
def test_specs_are_typed_by_the_setting():
    assert parse_param(RECALL, "lr", "log:1e-4:1e-2") == Param("lr", "log:1e-4:1e-2", "log",
                                                               1e-4, 1e-2)
    hidden = parse_param(RECALL, "hidden", "int:8:64")
    assert (hidden.kind, hidden.low, hidden.high, hidden.integer) == ("int", 8, 64, True)
    assert parse_param(RECALL, "batch_size", "choice:32, 64,128").choices == (32, 64, 128)
    assert parse_param(RECALL, "cell", "choice:lstm,gru").choices == ("lstm", "gru")
    assert parse_param(RECALL, "dropout", "float:0:0.5").kind == "float"
    assert parse_param(RECALL, "hidden", "log:4:256").integer  # ints on a log scale


@pytest.mark.parametrize(("name", "spec", "says"), [
    ("lr", "log:0:1", "a log scale needs LOW > 0"),
    ("lr", "log:1e-2:1e-4", "needs LOW < HIGH"),
    ("nope", "int:1:2", "is not a setting of the recall task"),
    ("out", "choice:a,b", "is not a setting of the recall task"),  # runtime, not searched
    ("cell", "choice:", "lists an empty choice"),
    ("cell", "choice:lstm,,gru", "lists an empty choice"),
    ("cell", "choice:lstm,cnn", "'cnn' is unknown; choose one of rnn, lstm, gru"),
    ("batch_size", "choice:32,big", "must be an int, got 'big'"),
    ("hidden", "float:4:8", "is an int setting: search it with int:LOW:HIGH or log:LOW:HIGH"),
    ("cell", "int:1:3", "is a str setting: search it with choice:A,B"),
    ("lr", "uniform:0:1", "must start with one of log, float, int, choice"),
    ("lr", "float:0", "needs float:LOW:HIGH"),
    ("lr", "float:a:1", "bound 'a' is not a number"),
])
def test_bad_specs_name_the_setting_and_the_problem(name, spec, says):
    with pytest.raises(ConfigError, match=says) as caught:
        parse_param(RECALL, name, spec)
    assert caught.value.setting == name


def test_a_space_needs_a_parameter():
    with pytest.raises(ConfigError, match="param is needed"):
        search_space(RECALL, {})


def test_space_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[params]\nlr = "log:1e-3:1e-1"\nhidden = "int:4:16"\n'
                    '[set]\ndata = "fresh"\nepochs = 3\nbidirectional = true\n')
    params, fixed = read_space_file(path)
    assert params == {"lr": "log:1e-3:1e-1", "hidden": "int:4:16"}
    assert fixed == {"data": "fresh", "epochs": "3", "bidirectional": "true"}
    path.write_text("[param]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"has a table \[param\]"):
        read_space_file(path)


@pytest.mark.parametrize("argv", [
    ["--param", "lr=log:0:1"],
    ["--param", "nope=int:1:2"],
    ["--param", "cell=choice:"],
    ["--param", "hidden=int:0:4"],  # the range's corner is checked by the task before any work
    ["--param", "lr=log:1e-3:1e-2", "--set", "epochs=many"],
    ["--param", "lr=log:1e-3:1e-2", "--set", "lr=0.1"],
    ["--param", "lr=log:1e-3:1e-2", "--storage", "mysql://u@h/db"],
    ["--param", "lr=log:1e-3:1e-2", "--storage", "postgresql://127.0.0.1:1/nope"],
])
def test_bad_sweeps_are_one_line_and_exit_2_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "recall", "--trials", "2", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: --") and err.count("\n") == 1, err
    assert not out.exists()


def test_a_joining_worker_must_search_the_same_space(tmp_path):
    spec = storage_spec(None, tmp_path)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(spec.journal)))
    first = SweepOptions("recall", search_space(RECALL, {"lr": "log:1e-3:1e-2"}))
    prepare_study(storage, first)
    prepare_study(storage, first)  # the same sweep joins
    other = SweepOptions("recall", search_space(RECALL, {"lr": "log:1e-4:1e-2"}))
    with pytest.raises(ConfigError, match="already searches another space"):
        prepare_study(storage, other)


# -- sweeps on the journal storage ------------------------------------------------------
def trial_records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("trials/*/trial.json"))]


@pytest.mark.slow
def test_two_workers_share_a_journal_study(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "recall", "--trials", "4", "--workers", "2", "--pruner", "none",
            "--no-figures", "--seed", "3", "--out", str(out), *SPACE, *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("trial ") >= 4 and "best run folder:" in printed
    records = trial_records(out)
    assert sorted(r["trial"] for r in records) == [0, 1, 2, 3]
    assert {r["state"] for r in records} == {"complete"} and {r["study"] for r in records} == {
        "sweep"}
    for record in records:
        folder = out / "trials" / f"trial-{record['trial']:04d}"
        assert (folder / "summary.json").is_file()  # an ordinary, complete run folder
        config = json.loads((folder / "config.json").read_text())
        assert config["model"]["hidden_size"] == record["params"]["hidden"]
        assert config["train"]["lr"] == record["params"]["lr"]
        assert 4 <= record["params"]["hidden"] <= 12
    status = sweep_status(out)
    assert status.states["complete"] == 4 and status.states["running"] == 0
    best = max(records, key=lambda r: (r["value"], -r["trial"]))
    assert (status.best.number, status.best.value) == (best["trial"], best["value"])
    assert status.best.run_folder == str(out / "trials" / f"trial-{best['trial']:04d}")
    assert main(["sweep", "status", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["states"]["complete"] == 4 and shown["best"]["params"] == best["params"]
    # the same command again: the budget is spent, nothing more is trained
    assert main(argv) == 0
    assert len(trial_records(out)) == 4


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def holds_a_trial(pid: int) -> bool:
    """Whether worker ``pid`` trains a trial now (it keeps the trial's lock file open)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any("/.running/" in link for link in links)


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_sweep_completes(tmp_path):
    out = tmp_path / "sweep"
    slower = ["--set", "data=fresh", "--set", "epochs=4", "--set", "train_size=4096",
              "--set", "valid_size=256", "--set", "test_size=256"]
    sweep = subprocess.Popen([*RNNLAB, "sweep", "recall", "--trials", "3", "--workers", "2",
                              "--pruner", "none", "--no-figures", "--out", str(out),
                              "--param", "lr=log:3e-3:3e-2", *slower],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        training = wait_for(lambda: list(out.glob("trials/*/metrics.jsonl")), 120,
                            "a trial's first epoch")  # mid-trial: an epoch done, more to go
        workers = wait_for(lambda: children(sweep.pid), 10, "the worker processes")
        assert training
        victim = next(pid for pid in workers if holds_a_trial(pid))
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = sweep.communicate(timeout=240)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr
    status = sweep_status(out)
    assert status.states["complete"] == 3 and status.states["failed"] == 1, stdout
    failed = next(row for row in status.trials if row.state == "failed")
    record = json.loads((Path(failed.run_folder) / "trial.json").read_text())
    assert record["state"] == "failed" and "stopped mid-trial" in record["reason"]
    assert not (Path(failed.run_folder) / "summary.json").exists()


# -- PostgreSQL: a throwaway cluster ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(argv: list[str]) -> list[str]:
    """initdb refuses root: run the server's tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture
def postgres_url():
    if not PG_BIN or not (PG_BIN[-1] / "initdb").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries missing under /usr/lib/postgresql/*/bin in CI")
        pytest.skip("PostgreSQL binaries missing (apt-get install postgresql)")
    bin_dir, port = PG_BIN[-1], free_port()
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    run = lambda argv: subprocess.run(as_postgres(argv), check=True,  # noqa: E731
                                      capture_output=True, text=True)
    run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"])
    try:
        run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "rnnlab"])
        yield f"postgresql://postgres@127.0.0.1:{port}/rnnlab"
    finally:
        run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_a_postgresql_study(postgres_url, tmp_path):
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    sweeps = [subprocess.Popen([*RNNLAB, "sweep", "recall", "--trials", "4", "--storage",
                                postgres_url, "--study", "shared", "--pruner", "none",
                                "--no-figures", "--out", str(out), *SPACE, *TINY],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for out in outs]
    results = [s.communicate(timeout=240) for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], results
    numbers = [r["trial"] for out in outs for r in trial_records(out)]
    assert sorted(numbers) == [0, 1, 2, 3]  # every trial trained once, by one process
    assert all(trial_records(out) for out in outs), "both processes trained trials"
    status = sweep_status(storage=postgres_url, study="shared")
    assert status.states["complete"] == 4 and sum(status.states.values()) == 4
    assert status.best is not None and Path(status.best.run_folder).is_dir()
    assert status.storage == postgres_url  # no password in it to mask
