"""Device selection and the device-dependent paths, checked on the CPU; the CUDA test
runs only where a CUDA device is present."""

from __future__ import annotations

import os

import pytest
import torch

import rnnlab
from rnnlab.cli import main
from rnnlab.core.backends import RecurrentRunner
from rnnlab.core.devices import describe_device, device_of, resolve_device
from rnnlab.core.errors import ConfigError
from rnnlab.core.train import Batch

torch.set_num_threads(1)
HAS_CUDA = torch.cuda.is_available()


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("rnnlab.core.devices.mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr("rnnlab.core.devices.mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: nothing to refuse")
@pytest.mark.parametrize("name, message", [
    ("cuda", "cuda is not available: this machine has no CUDA device"),
    ("cuda:3", "cuda:3 is not available"),
    ("tpu", "'tpu' is unknown; choose one of auto, cpu, cuda, cuda:N, mps"),
    ("cuda:x", "'cuda:x' is unknown"),
])
def test_a_device_this_machine_lacks_is_refused_in_one_line(name, message):
    with pytest.raises(ConfigError, match=message):
        resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("command", [
    ["train", "recall", "--dry-run"], ["reproduce", "--quick"], ["evaluate", "RUN"],
    ["predict", "RUN", "3", "1", "4"],
])
def test_every_command_refuses_a_missing_device_before_work(tmp_path, capsys, command):
    run = tmp_path / "run"
    assert main(["train", "recall", "--dry-run", "--quiet", "--hidden", "3", "--no-figures",
                 "--out", str(run), "--device", "cpu", "--threads", "1"]) == 0
    capsys.readouterr()
    argv = [str(run / "hidden-3") if a == "RUN" else a for a in command]
    out = tmp_path / "new"
    if command[0] in ("train", "reproduce"):
        argv += ["--out", str(out)]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda is not available" in err
    assert not out.exists()


def test_the_run_record_names_the_device(tmp_path):
    run = rnnlab.train("addition", epochs=1, dry_run=True, device="cpu", out=tmp_path / "a")
    assert run.summary["environment"]["device"] == "cpu"
    assert describe_device(torch.device("cpu")) == {"device": "cpu"}
    assert device_of(run.model) == torch.device("cpu")


def test_a_batch_on_its_device_is_not_copied():
    batch = Batch(torch.zeros(2, 3, 1), torch.zeros(2), torch.tensor([3, 2]))
    assert batch.to(torch.device("cpu")) is batch


def test_autocast_follows_the_device_of_the_input():
    runner = RecurrentRunner("stock", "bf16")
    assert runner.autocast("cpu").device == "cpu"
    assert runner.autocast("cuda").device == "cuda"
    assert RecurrentRunner("stock", "fp32").autocast("cuda").__class__.__name__ == "nullcontext"


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_a_run_on_cuda_matches_the_cpu_closely(tmp_path):
    settings = dict(hidden=8, epochs=2, data="fresh", train_size=512, batch_size=64, lr=0.01,
                    backend="stock", no_figures=True)
    cpu = rnnlab.train("recall", device="cpu", out=tmp_path / "cpu", **settings)
    gpu = rnnlab.train("recall", device="cuda", out=tmp_path / "gpu", **settings)
    assert gpu.summary["environment"]["device"].startswith("cuda")
    assert abs(gpu.summary["test"]["accuracy"] - cpu.summary["test"]["accuracy"]) < 0.05


def test_deterministic_sets_torchs_flags_and_the_run_still_trains(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        run = rnnlab.train("addition", epochs=1, dry_run=True, deterministic=True,
                           out=tmp_path / "d")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32
        assert run.summary["epochs"] == 1
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_fp16_trains_with_a_gradient_scaler_kept_for_resume(tmp_path):
    run = rnnlab.train("recall", hidden=10, epochs=2, data="fresh", train_size=1280,
                       batch_size=64, lr=0.01, clip=1.0, precision="fp16", device="cpu",
                       no_figures=True, out=tmp_path / "f16")
    rows = run.metrics
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    last = run.record.load_checkpoint("last")
    assert last["scaler"]["scale"] > 0  # the scaler's state travels with the run
    assert run.config["train"]["precision"] == "fp16"
