"""The cell registry: each cell declared once, and what models and backends read from it."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from rnnlab.core import backends
from rnnlab.core.backends import Kernels, use_backend
from rnnlab.core.cells import CELLS, GRU, cell_names, cell_of, get_cell, register_cell
from rnnlab.core.errors import UnknownNameError
from rnnlab.core.models import ModelConfig, SequenceClassifier


def test_the_registered_cells():
    assert set(cell_names()) >= {"rnn", "lstm", "gru"}
    assert get_cell("lstm").module is nn.LSTM


def test_an_unknown_cell_names_the_choices():
    with pytest.raises(UnknownNameError, match=r"'peephole'.*rnn, lstm, gru"):
        get_cell("peephole")


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_a_declaration_matches_its_module(name):
    """Gates are blocks of hidden_size rows of weight_ih, in order; mode and cell state
    are what the module made reports."""
    cell = get_cell(name)
    rnn = cell.make(input_size=3, hidden_size=7)
    assert rnn.weight_ih_l0.shape[0] == cell.num_gates * 7 == len(cell.gates) * 7
    assert rnn.mode == cell.mode
    assert rnn.batch_first
    _, h_n = rnn(torch.randn(2, 4, 3))
    assert isinstance(h_n, tuple) == cell.has_cell_state  # the LSTM's (h, c)
    assert cell.kernels is not None  # the built-in cells all have compiled kernels


def test_a_made_layer_knows_its_cell_without_changing_its_state_dict():
    rnn = get_cell("gru").make(input_size=3, hidden_size=4)
    assert cell_of(rnn) is get_cell("gru")
    assert cell_of(copy.deepcopy(rnn)) is get_cell("gru")
    assert list(rnn.state_dict()) == list(nn.GRU(3, 4, batch_first=True).state_dict())


@pytest.fixture
def gru_copy(monkeypatch):
    """GRU under another name without compiled kernels: a new cell, as a user adds one
    (registered for this test only)."""
    monkeypatch.setitem(CELLS, "gru_copy", None)  # restored (removed) after the test
    return register_cell(dataclasses.replace(GRU, name="gru_copy", kernels=None))


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2]))
    loss.backward()
    optimizer.step()


def test_a_new_cell_builds_and_trains(gru_copy):
    assert "gru_copy" in cell_names()
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(cell="gru_copy", hidden_size=8))
    assert cell_of(model.rnn) is gru_copy
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, torch.randn(3, 5, 28))
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_a_cell_without_kernels_falls_back_to_stock(gru_copy, capsys):
    """``compiled`` on a cell that declares no kernels: one warning line, then the stock
    module, with the same results as no backend at all."""
    cfg = ModelConfig(cell="gru_copy", hidden_size=8)
    torch.manual_seed(0)
    model, reference = SequenceClassifier(cfg), SequenceClassifier(cfg)
    reference.load_state_dict(model.state_dict())
    assert "declares no compiled kernels" in backends.supports(model.rnn)
    use_backend(model, "compiled")
    x = torch.randn(3, 5, 28)
    torch.testing.assert_close(model(x), reference(x))
    train_step(model, x)
    assert backends.runner_of(model.rnn).resolved == "stock"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gru_copy" in err and "stock" in err
    assert backends.auto_choice(model.rnn, torch.empty(500, 28, 28), 10_000).path == "stock"


def test_a_cell_with_kernels_runs_compiled(monkeypatch):
    """The backend reads the declaration, not a table of its own: a new cell that
    declares (GRU's) kernels trains on the compiled path."""
    monkeypatch.setitem(CELLS, "gru_twin", None)
    twin = register_cell(dataclasses.replace(GRU, name="gru_twin"))
    monkeypatch.setattr(backends, "_KERNELS", {})
    monkeypatch.setattr(backends, "compile_kernels",  # eager kernels: no compile time
                        lambda rnn, dtype, example, log=None: Kernels(cell_of(rnn), compiled=False))
    cfg = ModelConfig(cell="gru_twin", hidden_size=8, bidirectional=True)
    torch.manual_seed(0)
    model, reference = SequenceClassifier(cfg), SequenceClassifier(cfg)
    reference.load_state_dict(model.state_dict())
    use_backend(model, "compiled")
    x = torch.randn(3, 5, 28)
    torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)
    assert backends.runner_of(model.rnn).resolved == "compiled"
    assert backends.runner_of(model.rnn).kernels.cell is twin
