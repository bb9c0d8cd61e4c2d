"""Data-parallel training under torchrun (gloo on the CPU): ranks from the environment,
shards of each global batch, one step equal to the single-process step, rank 0 alone
writing and speaking, and a run killed mid-way resumed to the same metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnlab.cli import main
from rnnlab.core.distributed import Ranks, ranks_from_env, threads_per_rank
from rnnlab.core.errors import ConfigError
from rnnlab.core.records import RunRecord
from rnnlab.core.train import Batch, shard

torch.set_num_threads(1)
# one global batch per epoch, no dropout: the first step is the whole first epoch
ONE_STEP = ["recall", "--data", "fresh", "--hidden", "8", "--batch-size", "64", "--train-size",
            "64", "--valid-size", "50", "--test-size", "100", "--epochs", "1", "--lr", "0.01",
            "--quiet", "--no-figures", "--seed", "3"]


def torchrun(args: list[str], nproc: int = 2, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), "-m", "rnnlab", "train", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=240)
    return process.returncode, out, err


def test_ranks_come_from_torchruns_variables():
    assert ranks_from_env({}) == Ranks()
    ranks = ranks_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                            "LOCAL_WORLD_SIZE": "2"})
    assert (ranks.rank, ranks.world, ranks.main, ranks.active) == (1, 2, False, True)
    assert threads_per_rank(2, ranks) == 1 and threads_per_rank(16, ranks) == 8
    with pytest.raises(ConfigError, match="RANK 3 is not below WORLD_SIZE 2"):
        ranks_from_env({"RANK": "3", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="must be integers"):
        ranks_from_env({"WORLD_SIZE": "two"})


def test_shards_split_a_global_batch_without_overlap():
    x = torch.arange(5 * 4 * 1, dtype=torch.float32).reshape(5, 4, 1)
    lengths = torch.tensor([4, 1, 2, 1, 3])
    batch = Batch(x, torch.arange(5), lengths)
    parts = [shard(batch, Ranks(r, 2)) for r in range(2)]
    assert [len(p) for p in parts] == [3, 2]
    assert torch.cat([p.y for p in parts]).tolist() == [0, 1, 2, 3, 4]
    assert parts[1].x.shape == (2, 3, 1)  # padding beyond its own longest sequence trimmed


def test_two_ranks_take_the_same_first_step_as_one_process(tmp_path, capsys):
    assert main(["train", *ONE_STEP, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    code, out, err = finish(torchrun([*ONE_STEP, "--out", str(tmp_path / "two")]))
    assert code == 0, err
    assert out.count("test accuracy") == 1, "only rank 0 prints"
    single = RunRecord(tmp_path / "one" / "hidden-8").load_checkpoint("best")["state_dict"]
    ranked = RunRecord(tmp_path / "two" / "hidden-8").load_checkpoint("best")["state_dict"]
    assert single.keys() == ranked.keys()
    for name in single:
        assert torch.allclose(single[name], ranked[name], atol=1e-5, rtol=0), name
    assert not torch.equal(single["rnn.weight_hh_l0"], torch.zeros(1))


def test_an_error_is_said_once_by_rank_0(tmp_path):
    (tmp_path / "taken" / "hidden-8").mkdir(parents=True)
    (tmp_path / "taken" / "hidden-8" / "notes.txt").write_text("a user's file")
    code, _, err = finish(torchrun([*ONE_STEP, "--out", str(tmp_path / "taken")]))
    assert code != 0
    assert err.count("rnnlab: error:") == 1 and "already exists" in err


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_finishes_the_run(tmp_path):
    args = ["recall", "--data", "fresh", "--hidden", "8", "--batch-size", "64", "--train-size",
            "4096", "--epochs", "6", "--lr", "0.01", "--quiet", "--no-figures", "--seed", "5"]
    code, _, err = finish(torchrun([*args, "--out", str(tmp_path / "whole")]))
    assert code == 0, err
    job = torchrun([*args, "--out", str(tmp_path / "cut")], start_new_session=True)
    metrics = tmp_path / "cut" / "hidden-8" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and job.poll() is None, "the run never got going"
        time.sleep(0.05)
    ranks = subprocess.run(["pgrep", "-f", "-g", str(job.pid), "rnnlab train"],
                           capture_output=True, text=True).stdout.split()
    os.kill(int(max(ranks, key=int)), signal.SIGKILL)  # the younger rank, mid-epoch
    code, _, err = finish(job)
    assert code != 0
    said = [line for line in err.splitlines() if line.startswith("rnnlab: ")]
    assert len(said) <= 1, said  # rank 0 speaks once (torchrun may stop it before it can)
    assert not said or "another rank of this run stopped" in said[0] \
        or "interrupted" in said[0], said
    code, _, err = finish(torchrun([*args, "--resume", "--out", str(tmp_path / "cut")]))
    assert code == 0, err
    assert metrics.read_bytes() == (tmp_path / "whole" / "hidden-8" / "metrics.csv").read_bytes()
