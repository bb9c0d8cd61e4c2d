"""minGRU: the minimal GRU.

Feng, Tung, Ahmed, Bengio, Hajimirsadeghi, "Were RNNs All We Needed?", 2024
(arXiv:2410.01201); the authors' code is github.com/BorealisAI/minRNNs
(``models/minRNNs.py``), itself built on lucidrains/minGRU-pytorch.

The GRU without h_{t-1} in its gates, in the paper's log-space form (appendix B.3.1),
which keeps h positive::

    update_t    = sigmoid(W_z x_t + b_z)
    candidate_t = g(W_h x_t + b_h),  g(v) = v + 0.5 for v >= 0, else sigmoid(v)
    h_t = (1 - update_t) * h_{t-1} + update_t * candidate_t

No gate reads h_{t-1}, so a training forward pass (``module.training``) computes the
steps with the log-space parallel scan (:mod:`rnnlab.core.cell_layers.scan`: chunks of
64 steps each at once, one chunk after another); in eval mode the step loop runs (the
paper's sequential mode), whose h equals the scan's to float rounding. Initialisation:
``nn.Linear(F, 2H)``'s, weights and bias ~ Uniform(+-1/sqrt(F)), as the authors'
``to_hidden_and_gate``. The layer here is the
recurrence alone: no expansion factor and no output projection (the authors' model
wraps it with those, a residual and a norm). Gates: ``update`` and ``candidate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.cell_layers.scan import ParallelScanCell, g, log_g
from rnnlab.core.cell_layers.stack import CellStack, State


class MinGRUCell(ParallelScanCell):
    gates = ("update", "candidate")

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        update_in, candidate_in = projected.chunk(2, -1)
        update, candidate = torch.sigmoid(update_in), g(candidate_in)
        return (torch.lerp(state[0], candidate, update),), {"update": update,
                                                             "candidate": candidate}

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log(1 - update), log(update * candidate): (C, B, H) each, from x (C, B, F)."""
        update_in, candidate_in = self.project(x).chunk(2, -1)
        return -F.softplus(update_in), -F.softplus(-update_in) + log_g(candidate_in)


class MinGRU(CellStack):
    """minGRU layers with ``nn.GRU``'s interface: parallel scan in training, step loop in
    eval mode."""

    cell_type = MinGRUCell
