"""minLSTM: the minimal LSTM.

Feng, Tung, Ahmed, Bengio, Hajimirsadeghi, "Were RNNs All We Needed?", 2024
(arXiv:2410.01201); the authors' code is github.com/BorealisAI/minRNNs
(``models/minRNNs.py``, ``use_coeff_norm``), itself built on lucidrains/minGRU-pytorch.

The LSTM without h_{t-1} in its gates and without the output gate, with the paper's
length-independent scaling (the forget and input gates normalised to sum to one) and
its log-space form (appendix B.3.2)::

    f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i)
    forget_t = f_t / (f_t + i_t),  input_t = i_t / (f_t + i_t)
    candidate_t = g(W_h x_t + b_h),  g(v) = v + 0.5 for v >= 0, else sigmoid(v)
    h_t = forget_t * h_{t-1} + input_t * candidate_t

A training forward pass (``module.training``) computes the steps with the log-space
parallel scan (:mod:`rnnlab.core.cell_layers.scan`: chunks of 64 steps each at once, one
chunk after another); eval mode runs the step loop. Initialisation: ``nn.Linear(F, 3H)``'s,
weights and bias ~ Uniform(+-1/sqrt(F)), as the authors' ``to_hidden_and_gate`` with
``forget_bias_init_scale`` unset. The layer
is the recurrence alone (no expansion, no output projection). Gates, as traced:
``forget`` and ``input`` (the normalised ones that multiply) and ``candidate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.cell_layers.scan import ParallelScanCell, g, log_g
from rnnlab.core.cell_layers.stack import CellStack, State


class MinLSTMCell(ParallelScanCell):
    gates = ("forget", "input", "candidate")

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        forget_in, input_in, candidate_in = projected.chunk(3, -1)
        f, i = torch.sigmoid(forget_in), torch.sigmoid(input_in)
        total = f + i
        forget, input_, candidate = f / total, i / total, g(candidate_in)
        h = torch.addcmul(forget * state[0], input_, candidate)
        return (h,), {"forget": forget, "input": input_, "candidate": candidate}

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log(forget), log(input * candidate): (C, B, H) each, from x (C, B, F)."""
        forget_in, input_in, candidate_in = self.project(x).chunk(3, -1)
        # log(i / f) = log sigmoid(i_in) - log sigmoid(f_in)
        log_ratio = F.softplus(-forget_in) - F.softplus(-input_in)
        return -F.softplus(log_ratio), -F.softplus(-log_ratio) + log_g(candidate_in)


class MinLSTM(CellStack):
    """minLSTM layers with ``nn.LSTM``'s interface but one state, h (the cell has no c):
    parallel scan in training, step loop in eval mode."""

    cell_type = MinLSTMCell
