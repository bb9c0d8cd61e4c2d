"""minGRU and minLSTM as the authors wrote them: the whole-sequence log-space scan of the
paper's appendix B for sequences longer than one step, the plain update for one step.

Source: github.com/BorealisAI/minRNNs, commit ff52e9de9b470ad750fcf09d3c140a6ae29aa1ce,
``models/minRNNs.py`` (``minGRU``, ``minLSTM`` with ``use_coeff_norm``; no initial
hidden state, no expansion, ``to_out`` left out), and for the helpers it imports
(``g``, ``log_g``, the scan) github.com/lucidrains/minGRU-pytorch, commit
38b26e119a2e85e70ea53825dc09b91b021afa06, ``minGRU_pytorch/minGRU.py`` (MIT, Copyright
(c) 2024 Phil Wang), on which the authors' code is built. Licence of minRNNs: a LICENSE
file we could not read (header: Copyright (c) 2025-present, Royal Bank of Canada), so
this restates the functions in our own lines rather than copying them; parameter
layout (``to_hidden_and_gate``, chunk order) and arithmetic order are the authors'.
"""

import torch
import torch.nn.functional as F
from torch import nn


def g(x):
    return torch.where(x >= 0, x + 0.5, x.sigmoid())


def log_g(x):
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def scan_log(log_coeffs, log_values):  # along dim 1 (batch first), from h_0 = 0
    a_star = log_coeffs.cumsum(dim=1)
    return (a_star + (log_values - a_star).logcumsumexp(dim=1)).exp()


class MinGRUReference(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.to_hidden_and_gate = nn.Linear(dim, 2 * hidden)  # chunks: hidden, gate

    def forward(self, x):  # x (B, T, F) -> (B, T, H), parallel
        hidden, gate = self.to_hidden_and_gate(x).chunk(2, dim=-1)
        return scan_log(-F.softplus(gate), -F.softplus(-gate) + log_g(hidden))

    def step(self, x_t, prev):  # x_t (B, F), prev (B, H) or None
        hidden, gate = self.to_hidden_and_gate(x_t).chunk(2, dim=-1)
        tilde_h, gate = g(hidden), gate.sigmoid()
        return gate * tilde_h if prev is None else (1 - gate) * prev + gate * tilde_h


class MinLSTMReference(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.to_hidden_and_gate = nn.Linear(dim, 3 * hidden)  # chunks: hidden, forget, input

    def forward(self, x):  # x (B, T, F) -> (B, T, H), parallel, use_coeff_norm
        hidden, forget_gate, input_gate = self.to_hidden_and_gate(x).chunk(3, dim=-1)
        diff = F.softplus(-forget_gate) - F.softplus(-input_gate)
        return scan_log(-F.softplus(diff), -F.softplus(-diff) + log_g(hidden))

    def step(self, x_t, prev):
        hidden, forget_gate, input_gate = self.to_hidden_and_gate(x_t).chunk(3, dim=-1)
        tilde_h, f, i = g(hidden), forget_gate.sigmoid(), input_gate.sigmoid()
        f, i = f / (f + i), i / (f + i)
        return i * tilde_h if prev is None else f * prev + i * tilde_h


def run_steps(cell, x):  # x (B, T, F) -> (B, T, H), one step at a time
    h, outs = None, []
    for x_t in x.unbind(1):
        h = cell.step(x_t, h)
        outs.append(h)
    return torch.stack(outs, 1)
