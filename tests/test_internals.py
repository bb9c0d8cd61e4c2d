"""Per-step internals against the stock modules: the hidden and cell states the trace
recomputes from the weights must be what nn.RNN / nn.LSTM / nn.GRU compute, and the
gates must satisfy the cell's own update equations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnlab.core.cells import get_cell
from rnnlab.core.errors import UnknownNameError
from rnnlab.core.internals import StepTrace, trace_batch, trace_recurrent

TOLERANCE = 1e-5


def make_layer(cell: str, layers: int, bidirectional: bool, seed: int = 0) -> nn.RNNBase:
    torch.manual_seed(seed)
    return get_cell(cell).make(input_size=3, hidden_size=5, num_layers=layers,
                               bidirectional=bidirectional).eval()


def final_states(traces: list[StepTrace], which: str) -> torch.Tensor:
    """(L*D, H) the state each direction ends with, in h_n's order."""
    rows = []
    for t in traces:
        states = t.hidden if which == "hidden" else t.cell
        rows.append(states[-1] if t.direction == 0 else states[0])
    return torch.stack(rows)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_hidden_and_cell_states_match_the_stock_module(cell, layers, bidirectional):
    rnn = make_layer(cell, layers, bidirectional)
    x = torch.randn(1, 7, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, h_n = rnn(x)  # out (1, T, D*H) of the last layer
    traces = trace_recurrent(rnn, x)
    directions = 2 if bidirectional else 1
    assert [(t.layer, t.direction) for t in traces] == [
        (layer, d) for layer in range(layers) for d in range(directions)]
    last = torch.cat([t.hidden for t in traces[-directions:]], dim=-1)  # (T, D*H)
    torch.testing.assert_close(last, out[0], atol=TOLERANCE, rtol=0)
    h_n, c_n = h_n if isinstance(h_n, tuple) else (h_n, None)
    torch.testing.assert_close(final_states(traces, "hidden"), h_n[:, 0], atol=TOLERANCE, rtol=0)
    if c_n is not None:
        torch.testing.assert_close(final_states(traces, "cell"), c_n[:, 0], atol=TOLERANCE, rtol=0)
    else:
        assert all(t.cell is None for t in traces)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gates_are_named_by_the_declaration_and_shaped_steps_by_units(cell):
    rnn = make_layer(cell, 1, False)
    traces = trace_recurrent(rnn, torch.randn(1, 6, 3))
    assert tuple(traces[0].gates) == get_cell(cell).gates
    assert all(g.shape == (6, 5) for g in traces[0].gates.values())
    assert traces[0].hidden.shape == (6, 5) and traces[0].direction_name == "forward"


def test_lstm_gates_obey_the_lstm_equations():
    """c_t = f * c_{t-1} + i * g and h_t = o * tanh(c_t), backward direction included."""
    rnn = make_layer("lstm", 2, True, seed=3)
    for t in trace_recurrent(rnn, torch.randn(1, 9, 3)):
        i, f, g, o = (t.gates[n] for n in ("input", "forget", "cell", "output"))
        before = torch.zeros_like(t.cell)  # (T, H) c_{t-1} in reading order
        if t.direction == 0:
            before[1:] = t.cell[:-1]
        else:
            before[:-1] = t.cell[1:]
        torch.testing.assert_close(t.cell, f * before + i * g, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(t.hidden, o * t.cell.tanh(), atol=TOLERANCE, rtol=0)
        assert float(f.min()) >= 0 and float(f.max()) <= 1


def test_gru_gates_obey_the_gru_update():
    """h_t = (1 - z) * n + z * h_{t-1}."""
    rnn = make_layer("gru", 1, False, seed=4)
    t = trace_recurrent(rnn, torch.randn(1, 8, 3))[0]
    z, n = t.gates["update"], t.gates["new"]
    before = torch.cat([torch.zeros(1, 5), t.hidden[:-1]])
    torch.testing.assert_close(t.hidden, (1 - z) * n + z * before, atol=TOLERANCE, rtol=0)


def test_a_bare_stock_module_is_named_by_its_mode():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, batch_first=True)
    traces = trace_recurrent(rnn, torch.randn(1, 5, 3))
    assert tuple(traces[0].gates) == ("reset", "update", "new")


class TracingCell(nn.Module):
    """A cell module of its own: it reports its internals itself (batch first, (1, T, H))."""

    bidirectional = False

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def trace(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        gate = self.linear(x).sigmoid()  # (1, T, 4)
        return [{"hidden": gate.cumsum(1), "keep": gate}]


def test_a_cell_module_with_trace_reports_its_own_internals():
    traces = trace_recurrent(TracingCell(), torch.randn(1, 6, 3))
    assert len(traces) == 1 and traces[0].hidden.shape == (6, 4)
    assert list(traces[0].gates) == ["keep"] and traces[0].cell is None


def test_a_module_without_internals_is_refused_with_a_typed_error():
    with pytest.raises(UnknownNameError, match="trace"):
        trace_recurrent(nn.Linear(3, 4), torch.randn(1, 2, 3))


def test_a_batch_trace_is_each_input_traced_alone():
    rnn = make_layer("lstm", 2, True, seed=5)
    x = torch.randn(3, 6, 3)
    together = trace_batch(rnn, x)
    for b in range(3):
        alone = trace_recurrent(rnn, x[b : b + 1])
        for t, a in zip(together, alone, strict=True):
            torch.testing.assert_close(t.hidden[b], a.hidden, atol=TOLERANCE, rtol=0)
            torch.testing.assert_close(t.gates["forget"][b], a.gates["forget"],
                                       atol=TOLERANCE, rtol=0)
