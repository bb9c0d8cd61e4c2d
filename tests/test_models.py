import pytest
import torch
from torch import nn

from rnnlab.core.cells import CELLS
from rnnlab.core.errors import ConfigError, UserError
from rnnlab.core.models import ModelConfig, PerStepModel, SequenceClassifier, build_model


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [1, 7, 500 + 3])
def test_classifier_shapes_any_batch(cell, bidirectional, layers, batch):
    cfg = ModelConfig(cell=cell, input_size=28, hidden_size=16, num_layers=layers,
                      bidirectional=bidirectional)
    logits = SequenceClassifier(cfg)(torch.randn(batch, 28, 28))
    assert logits.shape == (batch, 10)


@pytest.mark.parametrize("cell", list(CELLS))
def test_per_step_shapes(cell):
    model = PerStepModel(ModelConfig(cell=cell, input_size=2, hidden_size=5, num_outputs=1))
    assert model(torch.randn(3, 11, 2)).shape == (3, 11)


def test_unknown_cell_lists_choices():
    with pytest.raises(UserError, match="rnn, lstm, gru"):
        ModelConfig(cell="transformer")


@pytest.mark.parametrize("field,value", [("hidden_size", 0), ("num_layers", 0), ("dropout", 1.0)])
def test_bad_sizes_rejected(field, value):
    with pytest.raises(UserError):
        ModelConfig(**{field: value})


def test_bidirectional_readout_uses_h_n_not_last_step():
    """The backward direction's h_n has seen the whole sequence; its last-step output
    has seen only the last row. Changing the first row must move the backward half."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", input_size=4, hidden_size=6, bidirectional=True)
    model = SequenceClassifier(cfg).eval()
    captured = []
    model.head.register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach()))
    x = torch.randn(2, 9, 4)
    x2 = x.clone()
    x2[:, 0] += 1.0  # change only the first time step
    model(x), model(x2)
    backward_half = slice(cfg.hidden_size, 2 * cfg.hidden_size)
    assert not torch.allclose(captured[0][:, backward_half], captured[1][:, backward_half])
    # and the features equal h_n of each direction
    _, (h_n, _) = model.rnn(x)
    assert torch.allclose(captured[0], torch.cat([h_n[0], h_n[1]], dim=-1))
    # while the last-step output's backward half would ignore the first row entirely
    out1, _ = model.rnn(x)
    out2, _ = model.rnn(x2)
    assert torch.allclose(out1[:, -1, backward_half], out2[:, -1, backward_half])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_lengths_match_single_sequences(cell, bidirectional):
    torch.manual_seed(1)
    cfg = ModelConfig(cell=cell, input_size=3, hidden_size=5, bidirectional=bidirectional,
                      num_layers=2)
    model = SequenceClassifier(cfg).eval()
    lengths = torch.tensor([4, 7, 2])
    x = torch.randn(3, 7, 3)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    batched = model(x, lengths)
    alone = torch.cat([model(x[i : i + 1, :n]) for i, n in enumerate(lengths)])
    assert torch.allclose(batched, alone, atol=1e-6)


def test_build_model_rejects_unknown_kind():
    with pytest.raises(UserError, match="classifier"):
        build_model("seq2seq", ModelConfig())


def test_lstm_cell_matches_hand_written_equations():
    """The registry's LSTM is the textbook cell: check one step by hand with its weights."""
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 1, 3)
    _, (h, c) = lstm(x)
    gates = x[:, 0] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
    i, _f, g, o = gates.chunk(4, dim=-1)  # f multiplies c_0 = 0
    c_ref = torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    assert torch.allclose(h[0], h_ref, atol=1e-6) and torch.allclose(c[0], c_ref, atol=1e-6)


def test_last_step_readout_reproduces_the_reference_flaw():
    """The flawed readout's backward half ignores every row but the last."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell="rnn", input_size=4, hidden_size=6, bidirectional=True,
                      readout="last_step")
    model = SequenceClassifier(cfg).eval()
    x = torch.randn(2, 9, 4)
    out, _ = model.rnn(x)
    assert torch.allclose(model(x), model.head(out[:, -1]))
    with pytest.raises(UserError, match="h_n"):
        ModelConfig(readout="mean")


def test_forget_bias_opens_the_lstm_forget_gate_and_nothing_else():
    torch.manual_seed(0)
    plain = build_model("classifier", ModelConfig(cell="lstm", input_size=3, hidden_size=4,
                                                  num_layers=2))
    torch.manual_seed(0)
    opened = build_model("classifier", ModelConfig(cell="lstm", input_size=3, hidden_size=4,
                                                   num_layers=2, forget_bias=1.0))
    forget = slice(4, 8)  # gates in weight-row order: input, forget, cell, output
    for name, value in opened.state_dict().items():
        before = plain.state_dict()[name]
        if name.startswith("rnn.bias_"):
            assert torch.equal(value[forget], torch.full((4,), 1.0 if "_ih_" in name else 0.0))
            keep = torch.ones(16, dtype=torch.bool)
            keep[forget] = False
            assert torch.equal(value[keep], before[keep])
        else:
            assert torch.equal(value, before), name
    with pytest.raises(ConfigError, match="forget_bias"):
        ModelConfig(cell="gru", forget_bias=1.0)
