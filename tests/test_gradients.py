"""The gradient-by-step probe (core/gradients.py) and its record and figure."""

import itertools
import json

import pytest
import torch

import rnnlab
from rnnlab.core.gradients import hidden_gradient_norms, measurable
from rnnlab.core.models import ModelConfig, build_model
from rnnlab.core.train import Batch, ClassificationObjective


def classifier(cell: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("classifier", ModelConfig(cell=cell, input_size=3, hidden_size=8,
                                                 num_outputs=4, **options))


def batch(n: int = 5, steps: int = 12) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(torch.randn(n, steps, 3, generator=g), torch.randint(0, 4, (n,), generator=g))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_last_step_matches_the_gradient_of_h_n(cell):
    """At t = T the probe's norm is that of dLoss/dh_n through the model's own forward pass."""
    model, b = classifier(cell), batch()
    norms = hidden_gradient_norms(model, b, ClassificationObjective())
    assert len(norms) == b.x.shape[1]
    model.eval()
    out, h_n = model.rnn(b.x)
    h = (h_n[0] if isinstance(h_n, tuple) else h_n).detach().requires_grad_()
    loss = ClassificationObjective()(model.readout(out, h), b).loss
    (grad,) = torch.autograd.grad(loss, h)
    expected = float(grad[-1].norm(dim=-1).mean() * len(b))
    assert norms[-1] == pytest.approx(expected, rel=1e-5)


def test_without_recurrent_weights_only_the_last_step_gets_a_gradient():
    model = classifier("rnn")
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()
    norms = hidden_gradient_norms(model, batch(), ClassificationObjective())
    assert norms[-1] > 0 and all(n == 0.0 for n in norms[:-1])


def test_the_plain_rnn_gradient_shrinks_going_back():
    model = classifier("rnn")
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(0.3)  # contracting: each step back multiplies by < 1
    norms = hidden_gradient_norms(model, batch(steps=20), ClassificationObjective())
    assert all(a < b for a, b in itertools.pairwise(norms))


def test_the_probe_leaves_model_and_random_state_alone():
    model, b = classifier("lstm", dropout=0.2, num_layers=2), batch()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    hidden_gradient_norms(model, b, ClassificationObjective())
    assert model.training
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_two_directions_and_padded_batches_are_not_measured():
    assert not measurable(classifier("gru", bidirectional=True), batch())
    padded = batch()
    assert not measurable(classifier("gru"), Batch(padded.x, padded.y, torch.full((5,), 12)))


def test_a_run_records_the_curve_and_draws_it(tmp_path):
    run = rnnlab.train("adding-problem", out=tmp_path / "run", cell="rnn", length=20, epochs=1,
                       train_size=128, valid_size=64, test_size=64, batch_size=32, threads=1)
    found = json.loads((run.path / "gradients.json").read_text())
    assert found["steps"] == 20 and len(found["init"]) == len(found["trained"]) == 20
    assert (run.path / "figures" / "gradient_norms.png").stat().st_size > 0
