"""``--backend auto``'s measured choice: the rule, the cache, the runner's record, and
that timing leaves the run untouched. Timings are injected (a fake measurer or clock),
so these tests are deterministic and compile nothing."""

import json
import warnings

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.cli import main
from rnnlab.core import autotune, backends
from rnnlab.core.autotune import (
    NOISE_MARGIN,
    AutotuneCacheWarning,
    Choice,
    Measurer,
    Timing,
    TuneCache,
    TuneKey,
    choose,
    pick,
    pick_precision,
)
from rnnlab.core.backends import Kernels, backend_record, runner_of, tune_key, use_backend
from rnnlab.core.cells import cell_of
from rnnlab.core.models import ModelConfig, SequenceClassifier


@pytest.fixture(autouse=True)
def _fresh_kernel_cache(monkeypatch):
    monkeypatch.setattr(backends, "_KERNELS", {})


class FakeMeasurer:
    """Stands for timing a layer: fixed step times, and a count of each kind of call."""

    def __init__(self, stock_ms=10.0, compiled_ms=6.0, compile_seconds=3.0):
        self.ms = {"stock": stock_ms, "compiled": compiled_ms}
        self.compile_seconds = compile_seconds
        self.estimates = self.measures = 0

    def estimate(self) -> float:
        self.estimates += 1
        return self.ms["stock"] / 1e3

    def measure(self, paths) -> Timing:
        self.measures += 1
        return Timing({p: self.ms[p] for p in paths}, self.compile_seconds)

    def measurer(self) -> Measurer:
        return Measurer(self.estimate, self.measure)


def key(**changes) -> TuneKey:
    fields = dict(cell="lstm", bidirectional=False, layers=1, batch=500, steps=28, features=28,
                  hidden=100, threads=2, precision="fp32", cpu="Test CPU")
    return TuneKey(**{**fields, **changes})


def test_a_choice_is_measured_once_then_read_from_the_cache(tmp_path):
    cache, fake = TuneCache(tmp_path / "autotune.json"), FakeMeasurer()
    first = choose(key(), 10_000, fake.measurer(), cache)
    assert (first.path, first.why) == ("compiled", "measured")
    assert first.ms_per_step == {"stock": 10.0, "compiled": 6.0}
    again = choose(key(), 10_000, fake.measurer(), TuneCache(tmp_path / "autotune.json"))
    assert (again.path, again.why, again.ms_per_step) == ("compiled", "cached", first.ms_per_step)
    assert fake.measures == 1 and fake.estimates == 1  # the second run timed nothing
    saved = json.loads((tmp_path / "autotune.json").read_text())
    assert saved["entries"][key().text()]["ms_per_step"] == {"stock": 10.0, "compiled": 6.0}


def test_keys_differ_by_threads_shape_cell_and_precision():
    texts = {key().text(), key(threads=1).text(), key(batch=128).text(), key(steps=784).text(),
             key(features=1).text(), key(cell="gru").text(), key(bidirectional=True).text(),
             key(precision="bf16").text(), key(cpu="Other CPU").text(), key(layers=2).text()}
    assert len(texts) == 10
    lstm = nn.LSTM(28, 100, batch_first=True)
    torch.set_num_threads(1)
    one = tune_key(lstm, (500, 28, 28), "fp32")
    assert one.cell == "lstm" and one.threads == 1 and one.torch_version == torch.__version__
    assert tune_key(nn.GRU(28, 100, batch_first=True), (500, 28, 28), "fp32") != one
    assert tune_key(lstm, (128, 28, 28), "fp32") != one


@pytest.mark.parametrize("compiled_ms", [10.0, 9.9, 10 * (1 - NOISE_MARGIN), 12.0])
def test_compiled_is_not_picked_within_the_noise_margin_or_slower(compiled_ms):
    assert pick(Timing({"stock": 10.0, "compiled": compiled_ms}), 10**6, 0.0) == "stock"


def test_compiled_must_repay_its_compile():
    timing = Timing({"stock": 10.0, "compiled": 5.0}, compile_seconds=4.0)  # saves 5 ms a step
    assert pick(timing, 1000, 4.0) == "compiled"  # 5 s saved
    assert pick(timing, 700, 4.0) == "stock"  # 3.5 s saved
    assert pick(Timing({"stock": 10.0}), 10**6, 0.0) == "stock"  # compiled never timed


def test_a_run_shorter_than_timing_it_is_not_timed(tmp_path):
    cache, fake = TuneCache(tmp_path / "autotune.json"), FakeMeasurer(stock_ms=10.0)
    # 5 s of compile (nothing recorded yet) and 8 steps of 10 ms: 5.08 s; 507 steps 5.07 s
    assert autotune.measuring_seconds(0.010, cache.compile_estimate(key())) == pytest.approx(5.08)
    choice = choose(key(), 507, fake.measurer(), cache)
    assert (choice.path, choice.why, fake.measures) == ("stock", "short run", 0)
    assert "5.1 s" in choice.detail and not cache.path.exists()
    assert choose(key(), 509, fake.measurer(), cache).why == "measured"
    # precision auto times each precision: twice the cost, so twice the steps to be timed
    fresh = TuneCache(tmp_path / "fresh.json")
    assert choose(key(), 1015, fake.measurer(), fresh, timings=2).why == "short run"
    assert choose(key(), 1017, fake.measurer(), fresh, timings=2).why == "measured"


def test_the_compile_estimate_is_this_machines_recorded_median(tmp_path):
    cache = TuneCache(tmp_path / "autotune.json")
    assert cache.compile_estimate(key()) == autotune.FIRST_COMPILE_SECONDS
    for hidden, seconds in ((10, 0.4), (20, 1.0), (30, 2.2), (40, 0.0)):  # 0: never compiled
        cache.put(key(hidden=hidden), Timing({"stock": 10.0, "compiled": 9.0}, seconds))
    cache.put(key(hidden=50, cpu="Other CPU"), Timing({"stock": 1.0, "compiled": 1.0}, 30.0))
    cache.put(key(hidden=60, torch_version="0.0"), Timing({"stock": 1.0, "compiled": 1.0}, 30.0))
    assert cache.compile_estimate(key(cell="gru")) == 1.0
    assert cache.compile_estimate(key(cpu="Third CPU")) == autotune.FIRST_COMPILE_SECONDS
    fake = FakeMeasurer(stock_ms=10.0)  # timing now costs 1.08 s: a 200-step run is timed
    assert choose(key(cell="gru"), 200, fake.measurer(), cache).why == "measured"


def test_a_cached_measurement_serves_short_runs_too(tmp_path):
    cache, fake = TuneCache(tmp_path / "autotune.json"), FakeMeasurer(compile_seconds=0.5)
    cache.put(key(), Timing({"stock": 10.0, "compiled": 5.0}, 0.5))
    choice = choose(key(), 200, fake.measurer(), cache)  # saves 1 s, compiles in 0.5 s
    assert (choice.path, choice.why, fake.estimates, fake.measures) == ("compiled", "cached", 0, 0)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": 99, "entries": {}}',
                                  '{"version": 1, "entries": []}'])
def test_a_corrupt_cache_is_ignored_with_a_warning(tmp_path, text):
    path = tmp_path / "autotune.json"
    path.write_text(text)
    fake = FakeMeasurer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = choose(key(), 10_000, fake.measurer(), TuneCache(path))
    assert choice.why == "measured" and fake.measures == 1
    complaints = [w for w in caught if issubclass(w.category, AutotuneCacheWarning)]
    assert len(complaints) == 1 and all("\n" not in str(w.message) for w in complaints)
    assert TuneCache(path).get(key()) is not None  # rewritten as a cache


def test_bad_entries_are_skipped_not_trusted(tmp_path):
    path = tmp_path / "autotune.json"
    entry = {"ms_per_step": {"stock": -1, "compiled": 5}, "compile_seconds": 1}
    path.write_text(json.dumps({"version": 1, "entries": {key().text(): entry}}))
    assert TuneCache(path).get(key()) is None


def test_an_unwritable_cache_costs_a_warning_not_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = TuneCache(blocker / "autotune.json")  # its folder is a file
    with pytest.warns(AutotuneCacheWarning) as caught:
        choice = choose(key(), 10_000, FakeMeasurer().measurer(), cache)
    assert choice.path == "compiled"
    assert any("not kept" in str(w.message) for w in caught)


# -- precision auto ------------------------------------------------------------------------
def timed(path, precision, ms, why="measured"):
    other = "compiled" if path == "stock" else "stock"
    return Choice(path, why, {path: ms, other: ms * 1.5}, precision=precision)


def test_bf16_is_picked_only_when_faster_than_fp32_beyond_the_noise():
    fp32 = timed("stock", "fp32", 10.0)
    bf16 = timed("compiled", "bf16", 6.0, why="cached")
    picked = pick_precision({"fp32": fp32, "bf16": bf16})
    assert (picked.path, picked.precision, picked.why) == ("compiled", "bf16", "measured")
    assert picked.ms_per_step == {"stock fp32": 10.0, "compiled fp32": 15.0,
                                  "compiled bf16": 6.0, "stock bf16": 9.0}
    near = timed("stock", "bf16", 10.0 * (1 - NOISE_MARGIN))
    assert pick_precision({"fp32": fp32, "bf16": near}).precision == "fp32"
    assert pick_precision({"fp32": fp32, "bf16": timed("stock", "bf16", 12.0)}).precision == "fp32"


def test_an_untimed_fp32_choice_stands_alone():
    short = Choice("stock", "short run", {"stock": 1.0}, precision="fp32")
    assert pick_precision({"fp32": short}) is short
    assert pick_precision({"fp32": timed("stock", "fp32", 10.0)}).ms_per_step == {
        "stock": 10.0, "compiled": 15.0}  # one precision timed: its own names


@pytest.mark.parametrize(("flags", "expected"), [("avx2 avx512f", ("fp32",)),
                                                  ("avx512f avx512_bf16", ("fp32", "bf16")),
                                                  ("amx_bf16 amx_tile", ("fp32", "bf16"))])
def test_auto_times_bf16_only_with_bf16_hardware(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"model name\t: Test CPU\nflags\t\t: fpu {flags}\n")
    assert backends.auto_precisions(str(cpuinfo)) == expected
    assert backends.auto_precisions(str(tmp_path / "missing")) == ("fp32",)


def test_time_steps_takes_medians_of_turns():
    ticks = iter(range(1000))
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    ms = autotune.time_steps(steps, clock=lambda: next(ticks) / 1e3)  # every step "takes" 1 ms
    assert ms == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert calls[:2] == ["a", "b"] and calls[2:6] == ["a", "b", "a", "b"]  # warm-up, then turns
    assert len(calls) == 2 * (autotune.WARMUP_STEPS + autotune.MAX_ROUNDS)  # under budget


# -- through the runner ------------------------------------------------------------------
@pytest.fixture
def fake_timing(monkeypatch):
    """auto's layer measurements come from a FakeMeasurer; compiling hands out eager kernels."""
    fake = FakeMeasurer()
    monkeypatch.setattr(backends, "layer_measurer", lambda *a, **k: fake.measurer())
    monkeypatch.setattr(backends, "compile_kernels",
                        lambda rnn, dtype, example, log=None: Kernels(cell_of(rnn), compiled=False))
    return fake


def auto_model(train_steps=10_000, cell="lstm"):
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell=cell, hidden_size=8))
    use_backend(model, "auto", train_steps=train_steps, log=lambda _line: None)
    model(torch.randn(3, 5, 28))
    return model


def test_the_runner_records_what_it_chose_and_why(fake_timing):
    first = runner_of(auto_model().rnn)
    assert (first.resolved, first.choice.why) == ("compiled", "measured")
    second = auto_model()
    assert runner_of(second.rnn).choice.why == "cached" and fake_timing.measures == 1
    assert backend_record(second, "auto") == {
        "requested": "auto", "path": "compiled", "precision": "fp32", "why": "cached",
        "ms_per_step": {"stock": 10.0, "compiled": 6.0}, "compile_seconds": 3.0}


def test_precision_auto_trains_in_what_timed_faster(monkeypatch):
    """bf16 timed faster (fake times per precision): the layer trains under bf16 autocast
    and the record says so; where the CPU has no bf16 hardware, fp32 and one timing."""
    fakes = {"fp32": FakeMeasurer(stock_ms=10.0, compiled_ms=12.0),
             "bf16": FakeMeasurer(stock_ms=6.0, compiled_ms=8.0)}
    monkeypatch.setattr(backends, "layer_measurer",
                        lambda rnn, shape, precision, log=None: fakes[precision].measurer())
    monkeypatch.setattr(backends, "auto_precisions", lambda: ("fp32", "bf16"))
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    use_backend(model, "auto", "auto", train_steps=10_000, log=lambda _line: None)
    model(torch.randn(3, 5, 28))
    runner = runner_of(model.rnn)
    assert (runner.resolved, runner.run_precision) == ("stock", "bf16")
    record = backend_record(model, "auto")
    assert (record["path"], record["precision"], record["why"]) == ("stock", "bf16", "measured")
    assert record["ms_per_step"]["stock bf16"] == 6.0
    with runner.autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(backends, "auto_precisions", lambda: ("fp32",))
    other = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    use_backend(other, "auto", "auto", train_steps=10_000, log=lambda _line: None)
    other(torch.randn(3, 5, 28))
    assert backend_record(other, "auto")["precision"] == "fp32"
    assert fakes["bf16"].measures == 1  # the cache served fp32 the second time


def test_precision_auto_with_a_named_backend_is_fp32():
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    use_backend(model, "compiled", "auto")
    assert backend_record(model, "compiled")["precision"] == "fp32"
    use_backend(model, "stock", "auto")  # plain nn.LSTM in fp32: no runner at all
    assert runner_of(model.rnn) is None


def test_slower_compiled_keeps_auto_on_stock(fake_timing):
    fake_timing.ms["compiled"] = 11.0
    runner = runner_of(auto_model().rnn)
    assert (runner.resolved, runner.choice.why, runner.kernels) == ("stock", "measured", None)


def test_forced_and_unsupported_layers_say_so(fake_timing):
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    assert backend_record(model, "stock") == {"requested": "stock", "path": "stock",
                                              "precision": "fp32", "why": "forced",
                                              "ms_per_step": {}}
    use_backend(model, "compiled")
    model(torch.randn(3, 5, 28))
    assert backend_record(model, "compiled")["why"] == "forced"
    relu = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    relu.rnn = nn.RNN(28, 8, nonlinearity="relu", batch_first=True)  # a mode no cell declares
    use_backend(relu, "auto", train_steps=10**6)
    relu.rnn.__dict__["rnnlab_runner"].resolve(relu.rnn, torch.randn(3, 5, 28))
    record = backend_record(relu, "auto")
    assert (record["path"], record["why"], record["detail"]) == ("stock", "not supported",
                                                                 "cell mode RNN_RELU")
    assert fake_timing.measures == 0


def test_auto_without_a_full_length_batch_says_so():
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    use_backend(model, "auto", train_steps=100)
    model(torch.randn(3, 5, 28), torch.tensor([5, 3, 2]))  # packed: stock, nothing decided
    assert backend_record(model, "auto")["why"] == "no full-length training batch"


def test_timing_leaves_the_run_untouched(monkeypatch):
    """A real measurement (eager kernels: no compile) on a two-layer LSTM with dropout:
    the global RNG, the weights and the gradients are as they were."""
    monkeypatch.setattr(backends, "compile_kernels",
                        lambda rnn, dtype, example, log=None: Kernels(cell_of(rnn), compiled=False))
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8, num_layers=2,
                                           dropout=0.5))
    model(torch.randn(3, 5, 28)).sum().backward()
    use_backend(model, "auto", train_steps=10)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    state = torch.get_rng_state()
    measurer = backends.layer_measurer(model.rnn, (4, 6, 28), "fp32")
    assert measurer.estimate() > 0
    timing = measurer.measure(("stock", "compiled"))
    assert set(timing.ms_per_step) == {"stock", "compiled"}
    assert torch.equal(torch.get_rng_state(), state)
    for name, p in model.named_parameters():
        assert torch.equal(p, weights[name]) and torch.equal(p.grad, grads[name]), name
    assert runner_of(model.rnn) is not None and runner_of(model.rnn).choice is None


def test_a_measurement_inside_training_draws_nothing(monkeypatch):
    """A real measurement at the first training batch (eager kernels: no compile) leaves
    the run's random stream where it would be without one."""
    monkeypatch.setattr(backends, "compile_kernels",
                        lambda rnn, dtype, example, log=None: Kernels(cell_of(rnn), compiled=False))
    monkeypatch.setattr(autotune, "measuring_seconds", lambda *_: 0.0)  # time this tiny run
    model = auto_model(cell="gru")
    assert runner_of(model.rnn).choice.why == "measured"
    after_auto = torch.rand(4)
    torch.manual_seed(0)
    SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))(torch.randn(3, 5, 28))
    assert torch.equal(torch.rand(4), after_auto)


# -- the command -------------------------------------------------------------------------
def test_bench_autotune_dry_run_lists_keys(capsys):
    assert main(["bench", "--autotune", "--dry-run", "--profile", "reference",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "lstm(100) B=500 T=28 F=28 fp32 1 thread" in out and "to time" in out
    assert "nothing timed" in out
    lines = [line for line in out.splitlines() if "thread" in line]
    assert len(lines) == len(set(lines))  # each key once


def test_bench_with_a_bad_flag_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--autotune", "--threads", "two"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads" in err


def test_the_run_record_says_which_path_trained(tmp_path):
    run = rnnlab.train("addition", epochs=1, dry_run=True, out=tmp_path / "run")
    backend = json.loads((tmp_path / "run" / "summary.json").read_text())["backend"]
    assert backend["requested"] == "auto" and backend["path"] == "stock"
    assert backend["why"] in ("short run", "no full-length training batch")
    assert run.summary["backend"] == backend
