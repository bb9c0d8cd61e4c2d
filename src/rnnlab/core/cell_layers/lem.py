"""LEM: the long expressive memory.

Rusch, Mishra, Erichson, Mahoney, "Long Expressive Memory for Sequence Modeling", ICLR
2022; the authors' code is github.com/tk-rusch/LEM.

A multiscale ODE discretised with learned, per-unit time steps; two states, y (the
output, "hidden") and z ("cell")::

    dt_t     = dt * sigmoid(W_1 y_{t-1} + V_1 x_t + b_1)     the time step of z
    dt_bar_t = dt * sigmoid(W_2 y_{t-1} + V_2 x_t + b_2)     the time step of y
    z_t = (1 - dt_t) * z_{t-1} + dt_t * tanh(W_z y_{t-1} + V_z x_t + b_z)
    y_t = (1 - dt_bar_t) * y_{t-1} + dt_bar_t * tanh(W_y z_t + V_y x_t + b_y)

The gates, in the paper's names and the order of ``weight_ih``'s row blocks, are
``dt``, ``dt_bar`` (traced as the scaled time steps above), ``z_candidate`` and
``y_candidate`` (the two tanh terms); ``weight_hh`` holds W_1, W_2, W_z (all read
y_{t-1}) and ``weight_zy`` W_y (reads z_t). Initialisation: every weight and bias
~ Uniform(+-1/sqrt(H)) (the authors' ``LEMCell.reset_parameters``). dt defaults to
0.31, the authors' psMNIST setting (``src/psMNIST/psMNIST_task.py``; sMNIST 0.21, their
``LEM`` class's own default 1.0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.core.cell_layers.stack import CellStack, RecurrentCell, State


class LEMCell(RecurrentCell):
    gates = ("dt", "dt_bar", "z_candidate", "y_candidate")
    num_states = 2  # (y, z)

    def __init__(self, input_size: int, hidden_size: int, dt: float = 0.31):
        super().__init__(input_size, hidden_size)
        self.dt = dt
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))  # V_1, V_2, V_z, V_y
        self.bias_ih = nn.Parameter(torch.empty(4 * H))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))  # W_1, W_2, W_z on y_{t-1}
        self.bias_hh = nn.Parameter(torch.empty(3 * H))
        self.weight_zy = nn.Parameter(torch.empty(H, H))  # W_y on z_t
        self.bias_zy = nn.Parameter(torch.empty(H))
        bound = 1.0 / math.sqrt(H)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        """Every bias folded into the input part: (T, B, 4H), in the weights' dtype."""
        bias = self.bias_ih + torch.cat([self.bias_hh, self.bias_zy])
        return nn.functional.linear(x, self.weight_ih, bias).to(self.weight_ih.dtype)

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        y, z = state  # (B, H) each
        H = self.hidden_size
        from_y = torch.addmm(projected[:, : 3 * H], y, self.weight_hh.t())  # (B, 3H)
        steps = torch.sigmoid(from_y[:, : 2 * H]) * self.dt  # (B, 2H): dt_t, dt_bar_t
        dt, dt_bar = steps[:, :H], steps[:, H:]
        z_candidate = torch.tanh(from_y[:, 2 * H :])
        z = torch.lerp(z, z_candidate, dt)
        y_candidate = torch.tanh(torch.addmm(projected[:, 3 * H :], z, self.weight_zy.t()))
        y = torch.lerp(y, y_candidate, dt_bar)
        return (y, z), {"dt": dt, "dt_bar": dt_bar, "z_candidate": z_candidate,
                        "y_candidate": y_candidate}


class LEM(CellStack):
    """LEM layers with ``nn.LSTM``'s interface; ``h_n`` is ``(y_n, z_n)`` (option: ``dt``)."""

    cell_type = LEMCell
