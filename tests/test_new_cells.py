"""The cells beyond nn.* (core/cell_layers): each against its authors' cell with copied
weights (outputs and every gradient, float64), minGRU/minLSTM's parallel scan against
their step loop, IndRNN's hand-written backward against autograd, nn.LSTM's packed
semantics, shapes, traces, the registry and backends, and the command line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference_cells import cornn_ref, indrnn_ref, lem_ref, minrnn_ref
from rnnlab.cli import main
from rnnlab.core import backends
from rnnlab.core.cell_layers import CellStack, indrnn
from rnnlab.core.cell_layers.scan import (
    CumsumSteps,
    LogcumsumexpSteps,
    chunked_scan_log,
    cumsum_steps,
    logcumsumexp_steps,
    running_sum,
)
from rnnlab.core.cell_layers.stack import RecurrentCell
from rnnlab.core.cells import cell_of, get_cell
from rnnlab.core.errors import ConfigError
from rnnlab.core.models import ModelConfig, SequenceClassifier

torch.set_num_threads(1)

NEW = ("indrnn", "cornn", "lem", "mingru", "minlstm")
PARALLEL = ("mingru", "minlstm")


def make(name: str, input_size: int = 2, hidden: int = 4, **kwargs) -> CellStack:
    return get_cell(name).make(input_size=input_size, hidden_size=hidden, **kwargs)


def states_of(h_n) -> tuple[torch.Tensor, ...]:
    return h_n if isinstance(h_n, tuple) else (h_n,)


# -- against the authors' cells ----------------------------------------------------------
def blocks(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """t's equal row blocks in ``order``: ours = blocks(theirs, order)."""
    parts = t.chunk(len(order))
    return torch.cat([parts[k] for k in order])


def inverse(order: list[int]) -> list[int]:
    return [order.index(k) for k in range(len(order))]


def reference(name: str, cell: RecurrentCell):
    """The authors' cell with ``cell``'s weights, how to run it on x (B, T, F) ->
    (out (B, T, H), last states), and its gradients in ``cell``'s parameter names."""
    F_, H = cell.input_size, cell.hidden_size
    with torch.no_grad():
        if name == "indrnn":
            ref = indrnn_ref.IndRNNReference(F_, H).double()
            ref.fc.weight.copy_(cell.weight_ih), ref.fc.bias.copy_(cell.bias)
            ref.weight_hh.copy_(cell.weight_hh)

            def run(x):
                h = ref(x.transpose(0, 1)).transpose(0, 1)
                return h, (h[:, -1],)

            def grads():
                return {"weight_ih": ref.fc.weight.grad, "bias": ref.fc.bias.grad,
                        "weight_hh": ref.weight_hh.grad}
        elif name == "cornn":
            ref = cornn_ref.CoRNNCellReference(F_, H, cell.dt, cell.gamma, cell.epsilon).double()
            ref.i2h.weight.copy_(torch.cat([cell.weight_ih, cell.weight_hh], 1))
            ref.i2h.bias.copy_(cell.bias)

            def run(x):
                y, z = (s.transpose(0, 1) for s in cornn_ref.run(ref, x.transpose(0, 1)))
                return y, (y[:, -1], z[:, -1])

            def grads():
                w = ref.i2h.weight.grad
                return {"weight_ih": w[:, :F_], "weight_hh": w[:, F_:], "bias": ref.i2h.bias.grad}
        elif name == "lem":
            ref = lem_ref.LEMCellReference(F_, H, cell.dt).double()
            ours_in, ours_hh = [1, 0, 3, 2], [1, 0, 2]  # ours: dt, dt_bar, z_cand, y_cand
            ref.inp2hid.weight.copy_(blocks(cell.weight_ih, inverse(ours_in)))
            ref.inp2hid.bias.copy_(blocks(cell.bias_ih, inverse(ours_in)))
            ref.hid2hid.weight.copy_(blocks(cell.weight_hh, inverse(ours_hh)))
            ref.hid2hid.bias.copy_(blocks(cell.bias_hh, inverse(ours_hh)))
            ref.transform_z.weight.copy_(cell.weight_zy), ref.transform_z.bias.copy_(cell.bias_zy)

            def run(x):
                y, z = (s.transpose(0, 1) for s in lem_ref.run(ref, x.transpose(0, 1)))
                return y, (y[:, -1], z[:, -1])

            def grads():
                return {"weight_ih": blocks(ref.inp2hid.weight.grad, ours_in),
                        "bias_ih": blocks(ref.inp2hid.bias.grad, ours_in),
                        "weight_hh": blocks(ref.hid2hid.weight.grad, ours_hh),
                        "bias_hh": blocks(ref.hid2hid.bias.grad, ours_hh),
                        "weight_zy": ref.transform_z.weight.grad,
                        "bias_zy": ref.transform_z.bias.grad}
        else:
            kind = minrnn_ref.MinGRUReference if name == "mingru" else minrnn_ref.MinLSTMReference
            ours = [1, 0] if name == "mingru" else [1, 2, 0]  # theirs: candidate first
            ref = kind(F_, H).double()
            ref.to_hidden_and_gate.weight.copy_(blocks(cell.weight_ih, inverse(ours)))
            ref.to_hidden_and_gate.bias.copy_(blocks(cell.bias, inverse(ours)))

            def run(x):  # the authors' parallel path in training, their step in eval
                h = ref(x) if cell.training else minrnn_ref.run_steps(ref, x)
                return h, (h[:, -1],)

            def grads():
                linear = ref.to_hidden_and_gate
                return {"weight_ih": blocks(linear.weight.grad, ours),
                        "bias": blocks(linear.bias.grad, ours)}
    return run, grads


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", NEW)
def test_a_cell_matches_its_authors_cell_with_the_same_weights(name, training):
    """Outputs, final states and every gradient (weights and input), float64."""
    torch.manual_seed(0)
    rnn = make(name).double().train(training)
    cell = rnn.cells["l0"]
    run_reference, reference_grads = reference(name, cell)
    x = torch.randn(3, 9, 2, dtype=torch.float64, requires_grad=True)
    results = []
    for forward in (rnn, run_reference):
        x.grad = None
        out, h_n = forward(x)
        last = tuple(s.reshape(3, 4) for s in states_of(h_n))
        weights = torch.Generator().manual_seed(1)  # the same loss weights for both
        loss = sum((t * torch.randn(t.shape, generator=weights, dtype=t.dtype)).sum()
                   for t in (out, *last))
        loss.backward()
        results.append((out.detach(), [s.detach() for s in last], x.grad.clone()))
    (out, last, dx), (ref_out, ref_last, ref_dx) = results
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    for ours, theirs in zip(last, ref_last, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)
    ref_grads = reference_grads()
    assert set(ref_grads) == {n for n, _ in cell.named_parameters()}
    for param_name, param in cell.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[param_name], atol=1e-5, rtol=0,
                                   msg=param_name)


# -- minGRU and minLSTM: the parallel scan against the step loop -------------------------
@pytest.mark.parametrize("steps", [1, 3, 784])
@pytest.mark.parametrize("name", PARALLEL)
def test_the_parallel_scan_equals_the_step_loop(name, steps):
    """Training mode scans in parallel, eval mode steps: the same h within 1e-4 (float32),
    from zero and from a given initial state of either sign."""
    torch.manual_seed(2)
    rnn = make(name, input_size=1, hidden=16)
    x = torch.randn(4, steps, 1)
    for hx in (None, torch.randn(1, 4, 16)):
        parallel, h_parallel = rnn.train()(x, hx)
        with torch.no_grad():
            sequential, h_sequential = rnn.eval()(x, hx)
        torch.testing.assert_close(parallel, sequential, atol=1e-4, rtol=0)
        torch.testing.assert_close(h_parallel, h_sequential, atol=1e-4, rtol=0)


def test_the_chunked_scan_matches_a_float64_loop_at_any_length():
    """Chunks keep float32's rounding that of 64 steps; the appendix's whole-sequence scan
    drifts with length (log A_t grows)."""
    torch.manual_seed(3)
    T = 1000
    gate, candidate = torch.randn(T, 2, 8), torch.randn(T, 2, 8)
    log_a = -F.softplus(gate)
    log_b = -F.softplus(-gate) + minrnn_ref.log_g(candidate)
    a, b = log_a.double().exp(), log_b.double().exp()
    h, expected = torch.zeros(2, 8, dtype=torch.float64), []
    for t in range(T):
        h = a[t] * h + b[t]
        expected.append(h)
    scanned, last = chunked_scan_log(torch.stack([log_a, log_b], -1),
                                     lambda piece: piece.unbind(-1), None)
    assert torch.equal(last, scanned[-1])
    error = scanned.double() - torch.stack(expected)
    assert error.abs().max() < 5e-5


def test_the_step_loop_cumsum_and_logcumsumexp_equal_torchs_with_gradients():
    """The CPU scan primitives against torch.cumsum / torch.logcumsumexp (float64, values
    and gradients), and gradcheck on their written-out backward passes."""
    torch.manual_seed(6)
    x = (torch.randn(70, 3, 5, dtype=torch.float64) * 30).requires_grad_()
    weights = torch.randn(70, 3, 5, dtype=torch.float64)
    for ours, theirs in ((cumsum_steps, lambda v: v.cumsum(0)),
                         (logcumsumexp_steps, lambda v: torch.logcumsumexp(v, 0))):
        results = []
        for function in (ours, theirs):
            x.grad = None
            out = function(x)
            (out * weights).sum().backward()
            results.append((out.detach(), x.grad.clone()))
        torch.testing.assert_close(results[0][0], results[1][0], atol=1e-10, rtol=1e-12)
        torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=1e-10)
    small = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(CumsumSteps.apply, (small,))
    assert torch.autograd.gradcheck(LogcumsumexpSteps.apply, (small,))
    assert torch.equal(running_sum(small.detach()[:1]), small.detach()[:1])  # one step


# -- IndRNN's kernel ---------------------------------------------------------------------
def test_the_indrnn_backward_passes_gradcheck(monkeypatch):
    monkeypatch.setattr(indrnn, "CHUNK", 4)  # 6 steps: two chunks, one of them short
    torch.manual_seed(4)
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    u = torch.empty(4, dtype=torch.float64).uniform_(-1, 1).requires_grad_()
    h0 = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(indrnn.IndRNNScan.apply, (x, weight, bias, u, h0))
    # h_T alone (h's gradient None), as a classifier reads it
    assert torch.autograd.gradcheck(lambda *a: indrnn.IndRNNScan.apply(*a)[1],
                                    (x, weight, bias, u, h0))


def test_the_indrnn_kernel_equals_its_autograd_step_loop():
    torch.manual_seed(5)
    cell = make("indrnn", input_size=3, hidden=8).double().cells["l0"]
    x = torch.randn(150, 4, 3, dtype=torch.float64)  # three chunks, the last short
    results = []
    for scan in (cell.scan, lambda x_, s: RecurrentCell.scan(cell, x_, s)):
        cell.zero_grad()
        (h,), (last,) = scan(x, None)
        assert torch.equal(last, h[-1])
        (h * torch.linspace(-1, 1, h.numel(), dtype=h.dtype).view_as(h)).sum().backward()
        results.append((h.detach(), [p.grad.clone() for p in cell.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for kernel_grad, loop_grad in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(kernel_grad, loop_grad, atol=1e-10, rtol=1e-10)


def test_indrnn_clips_its_recurrent_weights_before_training_as_the_authors_do():
    rnn = make("indrnn", recurrent_max=0.5)
    cell = rnn.cells["l0"]
    assert cell.weight_hh.min() >= 0 and cell.weight_hh.max() <= 0.5  # U(0, recurrent_max)
    with torch.no_grad():
        cell.weight_hh[0] = 3.0
    rnn.eval()(torch.randn(2, 3, 2))
    assert cell.weight_hh[0] == 3.0  # evaluation leaves the weights alone
    rnn.train()(torch.randn(2, 3, 2))
    assert cell.weight_hh[0] == 0.5


# -- nn.LSTM's interface -----------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_packed_sequences_give_what_each_sequence_gives_alone(name):
    """Two layers, both directions, training mode (the parallel scans): a padded packed
    batch equals each sequence alone, outputs and every state of h_n."""
    torch.manual_seed(6)
    rnn = make(name, input_size=3, hidden=5, num_layers=2, bidirectional=True).train()
    lengths = torch.tensor([4, 7, 2])
    x = torch.randn(3, 7, 3)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed)
    out, out_lengths = pad_packed_sequence(out, batch_first=True)
    assert out_lengths.tolist() == lengths.tolist() and out.shape == (3, 7, 10)
    for i, n in enumerate(lengths.tolist()):
        alone, h_alone = rnn(x[i : i + 1, :n])
        torch.testing.assert_close(out[i : i + 1, :n], alone, atol=1e-5, rtol=1e-5)
        for state, state_alone in zip(states_of(h_n), states_of(h_alone), strict=True):
            torch.testing.assert_close(state[:, i : i + 1], state_alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NEW)
def test_two_bidirectional_layers_have_lstm_shapes(name):
    cell = get_cell(name)
    rnn = make(name, input_size=3, hidden=5, num_layers=2, bidirectional=True, dropout=0.3)
    assert (rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional,
            rnn.batch_first, rnn.mode) == (3, 5, 2, True, True, None)
    out, h_n = rnn(torch.randn(6, 11, 3))
    assert out.shape == (6, 11, 10)
    states = states_of(h_n)
    assert isinstance(h_n, tuple) == cell.has_cell_state
    assert all(s.shape == (4, 6, 5) for s in states)
    out2, _ = rnn(torch.randn(6, 11, 3), tuple(torch.zeros_like(s) for s in states))
    assert out2.shape == out.shape
    time_major = type(rnn)(3, 5, batch_first=False)
    assert time_major(torch.randn(11, 6, 3))[0].shape == (11, 6, 5)


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(7)
    rnn = make("lem", num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 2)
    assert not torch.equal(rnn.train()(x)[0], rnn(x)[0])
    assert torch.equal(rnn.eval()(x)[0], rnn(x)[0])


def test_bad_layer_settings_are_config_errors():
    with pytest.raises(ConfigError, match="dropout"):
        make("cornn", dropout=1.0)
    with pytest.raises(ConfigError, match="layers"):
        make("cornn", num_layers=0)


@pytest.mark.parametrize("name", NEW)
def test_trace_names_every_gate_and_its_hidden_is_the_output(name):
    cell = get_cell(name)
    torch.manual_seed(8)
    rnn = make(name, input_size=3, hidden=5, num_layers=2, bidirectional=True).eval()
    x = torch.randn(2, 6, 3)
    out, _ = rnn(x)
    traces = rnn.trace(x)
    assert len(traces) == 4  # (layer, direction) in h_n's order
    expected = {"hidden", *cell.gates} | ({"cell"} if cell.has_cell_state else set())
    for trace in traces:
        assert set(trace) == expected
        assert all(value.shape == (2, 6, 5) for value in trace.values())
    top_layer = torch.cat([traces[2]["hidden"], traces[3]["hidden"]], -1)
    torch.testing.assert_close(top_layer, out, atol=1e-6, rtol=1e-6)


# -- the registry, backends, the command line ---------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_a_new_cell_is_found_and_runs_stock_on_every_backend(name, capsys):
    cell = get_cell(name)
    assert cell_of(cell.make(input_size=2, hidden_size=3)) is cell
    assert cell_of(cell.module(2, 3)) is cell  # a bare module: found by its class
    assert "no compiled kernels" in backends.supports(cell.make(input_size=2, hidden_size=3))
    torch.manual_seed(9)
    model = SequenceClassifier(ModelConfig(cell=name, input_size=2, hidden_size=3))
    backends.use_backend(model, "compiled")
    loss = model(torch.randn(4, 5, 2)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", NEW)
def test_train_a_new_cell_from_the_command_line(name, tmp_path):
    assert main(["train", "adding-problem", "--cell", name, "--length", "12", "--dry-run",
                 "--hidden", "8", "--quiet", "--threads", "1",
                 "--out", str(tmp_path / name)]) == 0


def test_an_unknown_cell_is_refused_on_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's exit, as the command gives it
        main(["train", "adding-problem", "--cell", "peephole", "--dry-run", "--quiet",
              "--out", str(tmp_path / "r")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "peephole" in err and "mingru" in err
    assert not (tmp_path / "r").exists()


def test_a_new_layer_has_its_own_state_dict_names():
    rnn = make("lem", num_layers=2, bidirectional=True)
    names = list(rnn.state_dict())
    assert names[0] == "cells.l0.weight_ih" and "cells.l1_reverse.weight_zy" in names
    assert isinstance(rnn, nn.Module) and not isinstance(rnn, nn.RNNBase)
