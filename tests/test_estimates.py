"""The progress estimate of ``rnnlab reproduce`` comes from recorded epoch times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rnnlab.core.records import RunRecord
from rnnlab.study.estimates import EpochTimes, signature, work
from rnnlab.study.experiments import catalogue


def record_epochs(run_dir, seconds: list[float]) -> None:
    record = RunRecord.create(run_dir, {"task": "test"})
    record.write_metrics([{"epoch": i + 1} for i in range(len(seconds))],
                         [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)])


@pytest.fixture
def experiments():
    found = {e.name: e for e in catalogue("reference", ablations=False)}
    return found["lstm"], found["gru"], found["hidden-10"]


def test_with_nothing_recorded_the_estimate_is_the_work(tmp_path, experiments):
    lstm = experiments[0]
    times = EpochTimes(tmp_path / "times.json")
    assert times.rate() is None
    assert times.estimate(lstm, tmp_path / "run") == pytest.approx(work(lstm) * lstm.train.epochs)
    assert work(lstm) > work(experiments[2])  # 50,000 images of 28 rows vs 800 short sequences


def test_recorded_epochs_give_seconds_for_the_same_and_other_configurations(tmp_path, experiments):
    lstm, gru, recall = experiments
    record_epochs(tmp_path / "lstm", [10.0, 12.0])
    times = EpochTimes(tmp_path / "times.json")
    times.learn(lstm, tmp_path / "lstm")
    times.save()
    again = EpochTimes(tmp_path / "times.json")  # read back from the file
    assert again.estimate(lstm, tmp_path / "new") == pytest.approx(11.0 * lstm.train.epochs)
    rate = 11.0 / work(lstm)  # seconds per GFLOP recorded for the LSTM
    expected = work(gru) * rate * gru.train.epochs
    assert again.estimate(gru, tmp_path / "new") == pytest.approx(expected)
    record_epochs(tmp_path / "half-done", [3.0])  # an interrupted run's own epochs come first
    resumed = again.estimate(recall, tmp_path / "half-done")
    assert resumed == pytest.approx(3.0 * recall.train.epochs)


def test_the_signature_ignores_the_seed_only(experiments):
    lstm = experiments[0]
    assert signature(lstm) == signature(replace(lstm, train=replace(lstm.train, seed=5)))
    assert signature(lstm) != signature(replace(lstm, train=replace(lstm.train, batch_size=5)))


def test_an_unreadable_cache_is_ignored(tmp_path, experiments):
    (tmp_path / "times.json").write_text("not json")
    assert EpochTimes(tmp_path / "times.json").entries == {}


@pytest.mark.parametrize("profile", ["all", "long-range", "long-range-recipes"])
def test_every_experiment_trains_in_fp32(profile):
    """reproduce's numbers compare across machines: precision auto (bf16 on some CPUs
    only) is pinned to fp32, and a precision a recipe names is kept."""
    assert {e.train.precision for e in catalogue(profile)} == {"fp32"}
    exp = catalogue("reference", ablations=False)[0]
    assert replace(exp, train=replace(exp.train, precision="auto")).train.precision == "fp32"
    assert replace(exp, train=replace(exp.train, precision="bf16")).train.precision == "bf16"
