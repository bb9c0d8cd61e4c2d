"""How far back the loss reaches: the norm of dLoss/dh_t at every step t.

A gated cell passes the gradient back through many steps; a plain RNN's shrinks
geometrically (the vanishing gradient). :func:`hidden_gradient_norms` measures it for one
batch: the recurrent layer is unrolled one step at a time (the same module, the same
weights), each step's hidden state keeps its gradient, and the model's own head and the
task's own objective give the loss. It measures the last layer's state, the one the head
reads; a bidirectional layer's two directions see the sequence from both ends, so the
curve is drawn for one-directional models only.

Runs record the curve at initialisation and after training (``gradients.json``); the
figures read only that record.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.core.models import RecurrentModel, final_hidden
from rnnlab.core.train import Batch, Objective

PROBE_EXAMPLES = 256  # sequences of the first validation batch the curve is averaged over


def measurable(model: torch.nn.Module, batch: Batch) -> bool:
    """True when the curve can be measured: a one-directional recurrent model, and a batch of
    full-length sequences (the unrolled steps cannot skip padding)."""
    return (isinstance(model, RecurrentModel) and not model.cfg.bidirectional
            and batch.lengths is None)


def unrolled(model: RecurrentModel, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Run the recurrent layer one step at a time over x (B, T, F). Returns the layer's
    out (B, T, H) and h_n (L, B, H) rebuilt from the per-step states, and those states
    (T tensors (L, B, H))."""
    state, states = None, []
    for t in range(x.shape[1]):
        _, state = model.rnn(x[:, t : t + 1], state)  # state: (L, B, H) or ((L, B, H), c)
        states.append(final_hidden(state))
    out = torch.stack([h[-1] for h in states], dim=1)  # (B, T, H): every path through h_t
    return out, states[-1], states


def hidden_gradient_norms(model: RecurrentModel, batch: Batch, objective: Objective) -> list[float]:
    """Mean over the batch's sequences of ||dLoss_i / dh_t|| for each step t (last layer), with
    Loss_i one sequence's loss. Leaves the weights, their gradients, the train/eval mode
    and the random state as they were."""
    assert measurable(model, batch), "one-directional models and full-length batches only"
    n = min(len(batch), PROBE_EXAMPLES)
    probe = Batch(batch.x[:n], batch.y[:n]).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()  # no dropout: the curve of the model itself
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            out, h_n, states = unrolled(model, probe.x)
            loss = objective(model.readout(out, h_n), probe).loss
            hs = torch.autograd.grad(loss, states, allow_unused=True)
    finally:
        model.train(was_training)
    # the loss is a mean over the batch: each sequence's own gradient is n times its share
    return [0.0 if g is None else float(g[-1].norm(dim=-1).mean() * n) for g in hs]
