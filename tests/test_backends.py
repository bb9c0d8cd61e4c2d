"""The compiled backend against ``nn.RNN/LSTM/GRU`` with the same weights.

Most tests run the hand-written loop with eager (uncompiled) step kernels: the same
code path and arithmetic, in milliseconds. ``test_compiled_kernels_match_stock``
compiles them for real (a few seconds per cell)."""

import itertools
import warnings

import pytest
import torch
from torch import nn

from rnnlab.core import backends, cell_kernels
from rnnlab.core.backends import (
    Kernels,
    PerformanceWarning,
    StepMatmul,
    compiled_forward,
    onednn_is_faster,
    onednn_matmul,
    use_backend,
)
from rnnlab.core.cells import cell_names, cell_of, get_cell
from rnnlab.core.errors import UserError
from rnnlab.core.models import ModelConfig, PerStepModel, SequenceClassifier, final_hidden
from rnnlab.core.train import TrainConfig


@pytest.fixture(autouse=True)
def _fresh_kernel_cache(monkeypatch):
    monkeypatch.setattr(backends, "_KERNELS", {})


@pytest.fixture
def eager_kernels(monkeypatch):
    """compile_kernels hands out eager kernels: the backend's wiring without compile time."""
    monkeypatch.setattr(backends, "compile_kernels",
                        lambda rnn, dtype, example, log=None: Kernels(cell_of(rnn), compiled=False))


def stock_and_compiled(cell, bidirectional, layers, kernels, dtype=torch.float32, batch=4, steps=7):
    """Outputs, h_n and every gradient of ``nn.*`` and of the compiled path, same weights."""
    torch.manual_seed(0)
    rnn = get_cell(cell).make(input_size=6, hidden_size=5, num_layers=layers,
                              bidirectional=bidirectional)
    x = torch.randn(batch, steps, 6, requires_grad=True)
    results = []
    for run in ("stock", "compiled"):
        x.grad = None
        rnn.zero_grad()
        if run == "stock":
            out, h_n = rnn(x)
            h_n = final_hidden(h_n)
        else:
            out, h_n = compiled_forward(rnn, x, kernels, dtype)
        g_out = torch.linspace(-1, 1, out.numel()).view_as(out)
        g_h = torch.linspace(1, -1, h_n.numel()).view_as(h_n)
        ((out * g_out).sum() + (h_n * g_h).sum()).backward()
        grads = {name: p.grad.clone() for name, p in rnn.named_parameters()}
        results.append((out.detach(), h_n.detach(), x.grad.clone(), grads))
    return results


@pytest.mark.parametrize("cell,bidirectional,layers,onednn",
                         list(itertools.product([c for c in cell_names() if get_cell(c).kernels],
                                                [False, True], [1, 2], [False, True])))
def test_step_loop_matches_stock(cell, bidirectional, layers, onednn):
    """The step loop against nn.* with the same weights, its matmuls by torch.mm or by
    oneDNN (whichever compile_kernels measures faster)."""
    if onednn and not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    kernels = Kernels(get_cell(cell), compiled=False)
    kernels.onednn = onednn
    (out, h_n, dx, grads), (out2, h_n2, dx2, grads2) = stock_and_compiled(
        cell, bidirectional, layers, kernels)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_n2, h_n, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dx2, dx, atol=1e-5, rtol=1e-4)
    assert grads2.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow  # compiles with inductor: 5-20 s per cell on a shared 2-core machine
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_compiled_kernels_match_stock(cell):
    """torch.compile'd kernels (inductor, C++): same results as nn.* in float32."""
    kernels = Kernels(get_cell(cell), compiled=True)
    (out, h_n, dx, grads), (out2, h_n2, dx2, grads2) = stock_and_compiled(cell, True, 2, kernels)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_n2, h_n, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dx2, dx, atol=1e-5, rtol=1e-4)
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("cell,onednn", [("lstm", False), ("gru", False), ("gru", True)])
def test_bf16_close_to_fp32(cell, onednn):
    kernels = Kernels(get_cell(cell), compiled=False)
    kernels.onednn = onednn and torch.backends.mkldnn.is_available()
    (out, h_n, _, grads), (out2, h_n2, _, grads2) = stock_and_compiled(
        cell, True, 1, kernels, torch.bfloat16)
    assert out2.dtype == torch.float32  # bfloat16 matmuls, float32 results and state
    torch.testing.assert_close(out2, out, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(h_n2, h_n, atol=3e-2, rtol=3e-2)
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], atol=5e-2, rtol=5e-2, msg=name)


def test_the_matmul_choice_is_measured_and_said():
    faster, words = onednn_is_faster(8, 16, 3, torch.float32, repeats=1)
    assert isinstance(faster, bool)
    assert words.startswith("oneDNN (measured: " if faster else "torch.mm (")
    x, w = torch.randn(5, 4), torch.randn(4, 6)
    if torch.backends.mkldnn.is_available():
        torch.testing.assert_close(StepMatmul(w, 5, True)(x), x @ w)
        torch.testing.assert_close(onednn_matmul(x, w), x @ w)


def test_fast_tanh_and_sigmoid():
    x = torch.linspace(-30, 30, 100_001)
    assert (cell_kernels.tanh(x) - torch.tanh(x)).abs().max() < 1e-6
    assert (cell_kernels.sigmoid(x) - torch.sigmoid(x)).abs().max() < 1e-6


def test_bare_modules_find_their_cell_by_mode():
    """A bare nn.* module (not made by a Cell) runs on its mode's cell; a mode no cell
    declares (the ReLU RNN) is left to stock."""
    assert cell_of(nn.LSTM(3, 4)).name == "lstm"
    assert cell_of(nn.RNN(3, 4)).name == "rnn"
    assert backends.supports(nn.GRU(3, 4, batch_first=True)) is None
    relu = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    assert cell_of(relu) is None
    assert backends.supports(relu) == "cell mode RNN_RELU"


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_dicts_do_not_depend_on_the_backend(cell, eager_kernels):
    cfg = ModelConfig(cell=cell, hidden_size=8, bidirectional=True, num_layers=2)
    torch.manual_seed(0)
    stock = SequenceClassifier(cfg)
    fast = SequenceClassifier(cfg)
    use_backend(fast, "compiled")
    assert list(fast.state_dict()) == list(stock.state_dict())
    fast.load_state_dict(stock.state_dict())
    x = torch.randn(3, 5, 28)
    torch.testing.assert_close(fast(x), stock(x), atol=1e-5, rtol=1e-4)  # training mode: grads on
    assert backends.runner_of(fast.rnn).resolved == "compiled"
    stock.load_state_dict(fast.state_dict())


def test_variable_lengths_run_stock(eager_kernels):
    """Packed batches are the stock module's: the compiled loop never sees padding."""
    cfg = ModelConfig(cell="lstm", input_size=3, hidden_size=6, bidirectional=True, num_outputs=1)
    torch.manual_seed(0)
    model = PerStepModel(cfg)
    reference = PerStepModel(cfg)
    reference.load_state_dict(model.state_dict())
    use_backend(model, "compiled")
    x, lengths = torch.randn(4, 9, 3), torch.tensor([9, 4, 1, 7])
    torch.testing.assert_close(model(x, lengths), reference(x, lengths))
    full = model(x)  # a full-length batch does take the compiled path
    torch.testing.assert_close(full, reference(x), atol=1e-5, rtol=1e-4)


def test_evaluation_runs_stock(eager_kernels, monkeypatch):
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))
    use_backend(model, "compiled")
    calls = []
    monkeypatch.setattr(backends, "compiled_forward", lambda *a: calls.append(1))
    with torch.no_grad():
        model(torch.randn(2, 5, 28))
    assert calls == []


def test_compile_failure_falls_back_to_stock(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(backends, "_probe", broken)
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    reference = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    reference.load_state_dict(model.state_dict())
    use_backend(model, "compiled")
    x = torch.randn(3, 5, 28)
    torch.testing.assert_close(model(x), reference(x))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no C++ compiler" in err and "stock" in err
    assert backends.runner_of(model.rnn).resolved == "stock"


def test_auto_leaves_what_compiled_cannot_run_to_stock_without_timing(monkeypatch):
    """The measured choice (tests/test_autotune.py) is only for layers both paths run."""
    monkeypatch.setattr(backends, "layer_measurer", None)  # timing anything would fail
    batch = torch.empty(500, 28, 28)
    lstm = nn.LSTM(28, 100, batch_first=True)
    assert backends.auto_choice(lstm, batch, train_steps=None).why == "run length unknown"
    projected = nn.LSTM(28, 100, proj_size=10, batch_first=True)
    choice = backends.auto_choice(projected, batch, train_steps=700)
    assert (choice.path, choice.why, choice.detail) == ("stock", "not supported",
                                                        "LSTM projections")


def fake_cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nflags\t\t: {flags}\n")
    return str(path)


def test_bf16_warns_without_bf16_hardware(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "CPUINFO", fake_cpuinfo(tmp_path, "fpu sse2 avx2 avx512f fma"))
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))
    with pytest.warns(PerformanceWarning, match="avx512_bf16 or amx_bf16") as record:
        use_backend(model, "stock", "bf16")
    assert len(record) == 1  # once per model, not once per layer
    message = str(record[0].message)
    assert "\n" not in message and "slower than fp32" in message and "fp32" in message
    assert record[0].filename == __file__  # points at the caller of use_backend


@pytest.mark.parametrize("flags", ["fpu avx512f avx512_bf16", "fpu amx_tile amx_bf16"])
def test_bf16_is_quiet_with_bf16_hardware(tmp_path, monkeypatch, flags):
    monkeypatch.setattr(backends, "CPUINFO", fake_cpuinfo(tmp_path, flags))
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        use_backend(model, "stock", "bf16")


def test_bf16_is_quiet_where_the_flags_are_unknown(tmp_path, monkeypatch):
    """No /proc/cpuinfo (not Linux), or one without a flags line: nothing to say."""
    assert backends.cpu_flags(str(tmp_path / "missing")) is None
    monkeypatch.setattr(backends, "CPUINFO", str(tmp_path / "missing"))
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        use_backend(model, "stock", "bf16")
        use_backend(model, "stock", "fp32")  # fp32 never reads the flags
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert backends.slow_bf16_reason(str(tmp_path / "arm")) is None


def test_bf16_stock_is_autocast(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "CPUINFO", fake_cpuinfo(tmp_path, "avx512_bf16"))
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="gru", hidden_size=8))
    x = torch.randn(3, 5, 28)
    expected = model(x)
    use_backend(model, "stock", "bf16")
    got = model(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=3e-2, rtol=3e-2)
    use_backend(model, "stock", "fp32")  # removes the runner
    assert backends.runner_of(model.rnn) is None


def test_unknown_choices_fail_loudly():
    with pytest.raises(UserError, match="auto, stock, compiled"):
        TrainConfig(backend="cuda")
    with pytest.raises(UserError, match="auto, fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(UserError, match="auto, stock, compiled"):
        use_backend(SequenceClassifier(ModelConfig()), "fast")


def test_train_flags_reach_the_config():
    """The flags parse to the settings of the same name, which TrainConfig takes."""
    from rnnlab.cli import build_parser

    args = build_parser().parse_args(
        ["train", "mnist", "--backend", "compiled", "--precision", "bf16"])
    cfg = TrainConfig(backend=args.backend, precision=args.precision)
    assert (cfg.backend, cfg.precision) == ("compiled", "bf16")
    args = build_parser().parse_args(["train", "mnist"])
    assert (args.backend, args.precision) == ("auto", "auto")


def test_gflop_count():
    # LSTM(100) on 28x28 rows: 2*B*T*4H*(F+H) forward, 3x that to train
    assert backends.train_gflop("lstm", 500, 28, 28, 100) == pytest.approx(
        3 * 2 * 500 * 28 * 400 * 128 / 1e9)
    assert backends.train_gflop("gru", 1, 28, 28, 8, layers=2, directions=2) == pytest.approx(
        3 * 2 * 2 * 28 * 24 * ((28 + 8) + (16 + 8)) / 1e9)


def test_a_kernel_failing_mid_training_finishes_eagerly_then_stock(monkeypatch, capsys):
    """A recompile that fails during a backward pass (a new shape, the recompile
    limit) must not crash training: that batch finishes with the eager kernels, later
    batches run stock."""
    kernels = Kernels(get_cell("lstm"), compiled=False)

    def broken(*args):
        raise RuntimeError("recompile limit")

    kernels.step_back = broken
    monkeypatch.setattr(backends, "compile_kernels", lambda rnn, dtype, example, log=None: kernels)
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    reference = SequenceClassifier(ModelConfig(cell="lstm", hidden_size=8))
    reference.load_state_dict(model.state_dict())
    use_backend(model, "compiled")
    x = torch.randn(3, 5, 28)
    model(x).sum().backward()
    reference(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert "recompile limit" in capsys.readouterr().err
    model(x)
    assert backends.runner_of(model.rnn).resolved == "stock"


def test_two_graphs_before_one_backward_keep_their_buffers():
    """Buffers are reused from batch to batch only after their backward pass: two
    forward passes before one backward (accumulating losses) still get it right."""
    kernels = Kernels(get_cell("gru"), compiled=False)
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True)
    x1, x2 = torch.randn(4, 7, 6), torch.randn(4, 7, 6)
    (compiled_forward(rnn, x1, kernels, torch.float32)[1].sum()
     + compiled_forward(rnn, x2, kernels, torch.float32)[1].sum()).backward()
    got = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    (rnn(x1)[1].sum() + rnn(x2)[1].sum()).backward()
    for g, p in zip(got, rnn.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)
    for _ in range(3):  # and later batches reuse the returned buffers without harm
        rnn.zero_grad()
        compiled_forward(rnn, x1, kernels, torch.float32)[1].sum().backward()
    got = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    rnn(x1)[1].sum().backward()
    for g, p in zip(got, rnn.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


def test_a_second_backward_through_the_same_graph_fails_loudly():
    kernels = Kernels(get_cell("lstm"), compiled=False)
    rnn = nn.LSTM(6, 5, batch_first=True)
    _, h_n = compiled_forward(rnn, torch.randn(2, 3, 6), kernels, torch.float32)
    h_n.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        h_n.sum().backward()
