"""coRNN's cell as the authors wrote it: one ``nn.Linear`` over ``cat(x, hz, hy)``.

Source: github.com/tk-rusch/coRNN, commit afd81744d108a2d623761b635b4ba56770d9e05d,
``sMNIST/network.py`` (``coRNNCell``; ``psMNIST/network.py`` holds the same cell).
Licence: MIT, Copyright (c) 2020 Konstantin Rusch. Restated in our own lines (same
parameter name ``i2h``, same concatenation order, same arithmetic order) rather than
copied verbatim.
"""

import torch
from torch import nn


class CoRNNCellReference(nn.Module):
    def __init__(self, n_inp: int, n_hid: int, dt: float, gamma: float, epsilon: float):
        super().__init__()
        self.dt, self.gamma, self.epsilon = dt, gamma, epsilon
        self.i2h = nn.Linear(n_inp + n_hid + n_hid, n_hid)

    def forward(self, x, hy, hz):  # one step: x (B, F), hy, hz (B, H)
        forcing = torch.tanh(self.i2h(torch.cat((x, hz, hy), 1)))
        hz = hz + self.dt * (forcing - self.gamma * hy - self.epsilon * hz)
        hy = hy + self.dt * hz
        return hy, hz


def run(cell: CoRNNCellReference, x):  # x (T, B, F) -> hy, hz each (T, B, H)
    hy = x.new_zeros(x.shape[1], cell.i2h.out_features)
    hz = torch.zeros_like(hy)
    ys, zs = [], []
    for x_t in x:
        hy, hz = cell(x_t, hy, hz)
        ys.append(hy)
        zs.append(hz)
    return torch.stack(ys), torch.stack(zs)
