"""LEM's cell as the authors wrote it: ``inp2hid`` (4H: dt1, dt2, i_z, i_y), ``hid2hid``
(3H: dt1, dt2, h_y) and ``transform_z``.

Source: github.com/tk-rusch/LEM, commit 833da6b338a12c976e45db9061d6bcdccbfa4a5c,
``src/psMNIST/network.py`` (``LEMCell``). Licence: the repository has no licence file,
so this restates ``LEMCell.forward`` in our own lines rather than copying it; parameter
names, chunk order and arithmetic order are the authors'.
"""

import torch
from torch import nn


class LEMCellReference(nn.Module):
    def __init__(self, ninp: int, nhid: int, dt: float):
        super().__init__()
        self.dt = dt
        self.inp2hid = nn.Linear(ninp, 4 * nhid)
        self.hid2hid = nn.Linear(nhid, 3 * nhid)
        self.transform_z = nn.Linear(nhid, nhid)

    def forward(self, x, y, z):  # one step: x (B, F), y, z (B, H)
        i_dt1, i_dt2, i_z, i_y = self.inp2hid(x).chunk(4, 1)
        h_dt1, h_dt2, h_y = self.hid2hid(y).chunk(3, 1)
        ms_dt_bar = self.dt * torch.sigmoid(i_dt1 + h_dt1)
        ms_dt = self.dt * torch.sigmoid(i_dt2 + h_dt2)
        z = (1.0 - ms_dt) * z + ms_dt * torch.tanh(i_y + h_y)
        y = (1.0 - ms_dt_bar) * y + ms_dt_bar * torch.tanh(self.transform_z(z) + i_z)
        return y, z


def run(cell: LEMCellReference, x):  # x (T, B, F) -> y, z each (T, B, H)
    y = x.new_zeros(x.shape[1], cell.transform_z.out_features)
    z = torch.zeros_like(y)
    ys, zs = [], []
    for x_t in x:
        y, z = cell(x_t, y, z)
        ys.append(y)
        zs.append(z)
    return torch.stack(ys), torch.stack(zs)
