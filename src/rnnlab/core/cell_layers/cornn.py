"""coRNN: the coupled oscillatory recurrent neural network.

Rusch & Mishra, "Coupled Oscillatory Recurrent Neural Network (coRNN): An accurate and
(gradient) stable architecture for learning long time dependencies", ICLR 2021; the
authors' code is github.com/tk-rusch/coRNN (MIT licence).

A second-order ODE y'' = tanh(W y + 𝒲 y' + V u + b) - gamma y - epsilon y', discretised
with step dt (IMEX); two states, the position y (the output, "hidden") and the
velocity z ("cell")::

    candidate_t = tanh(W_z z_{t-1} + W_y y_{t-1} + V x_t + b)
    z_t = z_{t-1} + dt * (candidate_t - gamma * y_{t-1} - epsilon * z_{t-1})
    y_t = y_{t-1} + dt * z_t

``weight_hh`` is [W_z | W_y] (H, 2H), in the authors' order ``cat(x, hz, hy)``.
Initialisation: the authors' single ``nn.Linear(F + 2H, H)``, i.e. weights and bias
~ Uniform(+-1/sqrt(F + 2H)). Defaults dt = 0.076, gamma = 0.4, epsilon = 8.0 are the
authors' psMNIST settings (``psMNIST/psMNIST_task.py``; their sMNIST ones are 0.042,
2.7, 4.7, their adding-problem ones 0.06, 66, 15). The gate declared for the
explorer is the ``candidate``, the tanh forcing term.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.core.cell_layers.stack import CellStack, RecurrentCell, State


class CoRNNCell(RecurrentCell):
    gates = ("candidate",)
    num_states = 2  # (y, z): position (the output) and velocity

    def __init__(self, input_size: int, hidden_size: int, dt: float = 0.076,
                 gamma: float = 0.4, epsilon: float = 8.0):
        super().__init__(input_size, hidden_size)
        self.dt, self.gamma, self.epsilon = dt, gamma, epsilon
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # V
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 2 * hidden_size))  # [W_z | W_y]
        self.bias = nn.Parameter(torch.empty(hidden_size))
        bound = 1.0 / math.sqrt(input_size + 2 * hidden_size)  # nn.Linear(F + 2H, H)'s
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        """(T, B, H) in the weights' dtype (float32 under bf16 autocast)."""
        return nn.functional.linear(x, self.weight_ih, self.bias).to(self.weight_ih.dtype)

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        y, z = state  # (B, H) each
        H = self.hidden_size
        pre = torch.addmm(projected, z, self.weight_hh[:, :H].t())
        candidate = torch.tanh(torch.addmm(pre, y, self.weight_hh[:, H:].t()))
        force = torch.add(candidate, y, alpha=-self.gamma)  # candidate - gamma * y
        z = torch.add(z * (1.0 - self.dt * self.epsilon), force, alpha=self.dt)
        y = torch.add(y, z, alpha=self.dt)
        return (y, z), {"candidate": candidate}


class CoRNN(CellStack):
    """coRNN layers with ``nn.LSTM``'s interface; ``h_n`` is ``(y_n, z_n)`` (options:
    ``dt``, ``gamma``, ``epsilon``)."""

    cell_type = CoRNNCell
