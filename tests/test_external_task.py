"""A task defined outside the package: the parity of a bit string, written here as one
Task subclass and registered with ``rnnlab.register_task``. It runs through the API
(train, load, predict, evaluate), the command line, and ``rnnlab reproduce`` / ``report``
(two worker processes included), with no change to any file under ``src/``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.cli import main
from rnnlab.core import plots
from rnnlab.core.errors import InputError, check
from rnnlab.core.models import ModelConfig
from rnnlab.core.records import RunRecord
from rnnlab.core.runs import TaskData
from rnnlab.core.seeding import stream_generator
from rnnlab.core.settings import setting
from rnnlab.core.train import (
    ClassificationObjective,
    ShuffledBatches,
    TensorDataset,
    TrainConfig,
    evaluate,
)
from rnnlab.tasks.base import Experiment, Flaw, Prediction, PredictOptions, Task

torch.set_num_threads(1)


@dataclass(frozen=True)
class ParityConfig:
    length: int = setting(8, "bits per string")
    train_size: int = setting(512, "training strings")
    test_size: int = setting(256, "validation and test strings, each")

    def __post_init__(self) -> None:
        check(1 <= self.length <= 64, "length", f"must be in 1..64, got {self.length}")


def parity_set(n: int, length: int, generator: torch.Generator) -> TensorDataset:
    """``n`` random bit strings (N, T=length, F=1) and their parity (N,)."""
    bits = torch.randint(0, 2, (n, length), generator=generator)
    return TensorDataset(bits.float()[:, :, None], bits.sum(dim=1) % 2)


def parity_explanation(report) -> list[str]:
    return ["A parity model either counts every bit or guesses: 50% is the floor."]


class ParityTask(Task):
    """Parity of a bit string: one bit per step (F=1), MSB first; two classes, the
    parity of the count of ones; every string has the same length, nothing is padded."""

    name = "parity"
    title = "the parity of a bit string"
    Config = ParityConfig
    model_defaults = ModelConfig(cell="gru", input_size=1, hidden_size=16, num_outputs=2)
    train_defaults = TrainConfig(epochs=3, batch_size=64, lr=0.01, seed=7)
    input_help = "a bit string such as 1011"
    flaws = (Flaw("guessing", "parity", "A model that does not count guesses half right.",
                  "Train on short strings first.", parity_explanation, ablation=None),)

    def model_shape(self) -> tuple[int, int]:
        return 1, 2

    def shrunk(self, batch_size: int) -> ParityTask:
        return ParityTask(replace(self.config, train_size=128, test_size=64))

    def load_sets(self, seed: int, data_dir: str | None, training: bool = True) -> dict:
        return {name: parity_set(size, self.config.length, stream_generator("parity", seed, name))
                for name, size in (("train", self.config.train_size),
                                   ("valid", self.config.test_size),
                                   ("test", self.config.test_size))}

    def training_data(self, sets: dict, train: TrainConfig) -> TaskData:
        return TaskData(ShuffledBatches(sets["train"], train.batch_size, train.seed),
                        sets["valid"].in_order(train.eval_batch_size), ClassificationObjective())

    def test(self, model: nn.Module, sets: dict, batch_size: int, record: RunRecord) -> dict:
        return self.evaluate(model, sets, batch_size)

    def evaluate(self, model: nn.Module, sets: dict, batch_size: int) -> dict:
        return evaluate(model, sets["test"].in_order(batch_size), ClassificationObjective())

    def predict(self, model: nn.Module, inputs: Sequence[Any],
                options: PredictOptions) -> Iterator[Prediction | InputError]:
        for text in map(str, inputs):
            if not text or set(text) - {"0", "1"}:
                yield InputError(f"{text!r} is not a bit string")
                continue
            x = torch.tensor([[float(b)] for b in text])[None]  # (1, T, 1)
            with torch.no_grad():
                probabilities = model(x).softmax(dim=-1)[0]
            label = int(probabilities.argmax())
            yield Prediction(label, f"{text}: parity {label}", tuple(probabilities.tolist()),
                             {"bits": text, "parity": label})

    def draw_figures(self, record: RunRecord, data_dir: str | None) -> list[Path]:
        return plots.draw_learning_curves([("parity", record)], record.figures_dir)

    @classmethod
    def experiments(cls, profile: str, seeds: tuple[int, ...], ablations: bool) -> list[Experiment]:
        train = replace(cls.train_defaults, seed=seeds[0])
        model = replace(cls.model_defaults, hidden_size=16 if profile == "reference" else 32)
        return [Experiment(cls.name, "gru", "GRU parity", profile, "classifier", model, train,
                           {"length": 6, "train_size": 256, "test_size": 128}, reference=50.0,
                           note="a made-up reference of 50%", seeds=seeds[:1])]


@pytest.fixture
def parity():
    rnnlab.register_task(ParityTask)
    yield ParityTask
    from rnnlab.tasks.registry import REGISTRY

    REGISTRY.classes.pop("parity", None)


def test_a_registered_task_trains_loads_predicts_and_evaluates(parity, tmp_path):
    assert "parity" in rnnlab.tasks()
    run = rnnlab.train("parity", length=6, epochs=2, hidden=8, out=tmp_path / "p")
    assert len(run.metrics) == 2 and run.config["task_config"]["length"] == 6
    again = rnnlab.load(tmp_path / "p")
    p = again.predict("101100")
    assert p.label in (0, 1) and p.text == f"101100: parity {p.label}"
    assert again.evaluate()["accuracy"] == again.summary["test"]["accuracy"]
    with pytest.raises(InputError, match="not a bit string"):
        again.predict("12")
    with pytest.raises(rnnlab.ConfigError, match=r"length must be in 1\.\.64"):
        rnnlab.train("parity", length=99, out=tmp_path / "q")


def test_a_registered_task_gets_a_command_line(parity, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "parity", "--length", "5", "--epochs", "1", "--quiet", "--threads", "1",
                 "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["predict", str(out), "10110", "111"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("10110: parity ")
    assert main(["train", "parity", "--length", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--length must be in 1..64" in capsys.readouterr().err


@pytest.mark.slow
def test_a_registered_task_runs_through_reproduce_and_the_report(parity, tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--tasks", "parity", "--profile", "all", "--seeds", "1",
                 "--jobs", "2", "--quiet", "--out", str(out)]) == 0
    for profile in ("reference", "tuned"):
        assert RunRecord(out / "runs" / profile / "parity" / "gru" / "seed-2111").is_complete
    md = (out / "report.md").read_text()
    assert "the parity of a bit string" in md and "GRU parity" in md
    assert "A parity model either counts every bit or guesses" in md
    assert main(["report", str(out)]) == 0


def test_a_task_workers_cannot_import_is_refused_before_the_pool_starts(tmp_path, capsys):
    """A class from a notebook cell lives in ``__main__``: worker processes cannot import it,
    and a pool would wait for them forever."""
    cell_task = type("CellTask", (ParityTask,), {"name": "celltask", "__module__": "__main__"})
    rnnlab.register_task(cell_task)
    try:
        args = ["reproduce", "--tasks", "celltask", "--quick", "--jobs", "2", "--quiet",
                "--out", str(tmp_path / "r")]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "--jobs above 1 needs the celltask task importable" in err
        assert main([*args[:5], "1", *args[6:]]) == 0  # one job trains it in this process
    finally:
        from rnnlab.tasks.registry import REGISTRY

        REGISTRY.classes.pop("celltask", None)
