"""IndRNN as the authors run it: a dense input layer over time, then the elementwise
recurrence h_t = relu(input_t + weight_hh * h_{t-1}), one step at a time.

Source: github.com/Sunnydreamrain/IndRNN_pytorch, commit
9b9cb4cd6b42bfedb90605b51a962ea44443efdd: ``IndRNN_onlyrecurrent.py``
(``IndRNNCell_onlyrecurrent.forward``, ``IndRNN_onlyrecurrent.forward``) and
``pixelMNIST/utils.py`` (``Linear_overtime_module``: an ``nn.Linear`` named ``fc``).
Licence: the repository has no licence file, so this restates those functions in a few
lines of our own rather than copying them; the parameter names and the order of the
arithmetic are the authors'.
"""

import torch
import torch.nn.functional as F
from torch import nn


class IndRNNReference(nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.fc = nn.Linear(input_size, hidden_size)  # Linear_overtime_module.fc
        self.weight_hh = nn.Parameter(torch.empty(hidden_size).uniform_(0, 1))

    def forward(self, x):  # x (T, B, F) -> h (T, B, H)
        hx = x.new_zeros(x.shape[1], self.weight_hh.shape[0])
        outputs = []
        for input_t in self.fc(x):
            hx = F.relu(input_t + hx * self.weight_hh.unsqueeze(0).expand(hx.size(0), -1))
            outputs.append(hx)
        return torch.stack(outputs, 0)
