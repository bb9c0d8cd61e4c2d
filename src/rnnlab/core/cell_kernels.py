"""The compiled backend's per-step kernels, one forward and one backward per cell.

They live apart from :mod:`rnnlab.core.backends` so that each cell's declaration
(:mod:`rnnlab.core.cells`) can name its kernels without importing the backend, which
itself reads the declarations: the import runs one way, cells -> kernels.

One signature for every cell's step kernel. ``pre`` (B, G*H) is the step's gate
pre-activation from the matmul: for the LSTM and the vanilla RNN everything (input,
recurrent and both biases, one matmul), for the GRU the input part with b_ih only,
its recurrent part ``hw`` (h_prev @ W_hh^T, no bias) coming separately because the
new gate scales it by r. A kernel writes h (float32, the layer output) into
``h_out``, h again in the matmul dtype into ``hx_out`` (the next step's matmul
input), and what the backward pass needs into ``c_out`` and ``acts_out``;
compiled, those writes land in place, in the preallocated (T, B, ...) buffers.

A backward kernel gets the two parts of the gradient of this step's h (B, H): from
the next step, through its matmul (``dh_next``), and from the layer output
(``dout``); it writes the gradient of ``pre`` into ``dpre_out`` (and, for the GRU,
that of ``hw`` into ``dhw_out``), in the matmul dtype, since they only feed
matmuls. ``carry`` (B, H) goes to the step before outside the matmul: the LSTM's
dc, the GRU's z * dh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CellKernels:
    """What the compiled backend needs beyond a cell's gates: its two kernels and
    the shape of the step loop around them."""

    step: Callable  # the forward kernel, signature above
    step_back: Callable  # the backward kernel
    saved: int = 0  # activations saved per step for the backward pass, in units of H
    split: bool = False  # the recurrent matmul is separate (the GRU: r scales it)


# tanh as a rational function (Eigen's fast float tanh, within 4e-7 of torch.tanh):
# only multiply-adds and one division, which the compiled kernels vectorise far
# better than the exp behind torch.tanh and torch.sigmoid (docs/benchmarks.md).
TANH_CLAMP = 7.90531110763549805
TANH_NUM = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
            5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
            -2.76076847742355e-16)  # x^1, x^3, ..., x^13
TANH_DEN = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
            1.19825839466702e-06)  # x^0, x^2, ..., x^6


def tanh(x: Tensor) -> Tensor:
    x = x.clamp(-TANH_CLAMP, TANH_CLAMP)
    x2 = x * x
    num, den = TANH_NUM[-1], TANH_DEN[-1]
    for a in TANH_NUM[-2::-1]:
        num = num * x2 + a
    for b in TANH_DEN[-2::-1]:
        den = den * x2 + b
    return x * num / den


def sigmoid(x: Tensor) -> Tensor:
    return 0.5 * tanh(0.5 * x) + 0.5


def gates(pre: Tensor, count: int, hidden: int) -> Tensor:
    """(B, G*H) -> (B, G, H), in float32: one gate per index of dim 1."""
    return pre.float().view(-1, count, hidden)


LSTM_TANH_GATE = 2  # gates: input, forget, cell (tanh), output (the others sigmoid)


def lstm_step(pre, hw, b_hh, h_prev, c_prev, h_out, hx_out, c_out, acts_out):
    a = gates(pre, 4, h_out.shape[1])
    # all four activations in one pass over (B, 4, H): sigmoid(x) = (1 + tanh(x / 2)) / 2
    is_tanh = torch.arange(4, device=a.device).view(1, 4, 1) == LSTM_TANH_GATE
    t = tanh(torch.where(is_tanh, a, 0.5 * a))
    act = torch.where(is_tanh, t, 0.5 * t + 0.5)
    acts_out.view_as(a).copy_(act)
    i, f, g, o = act[:, 0], act[:, 1], act[:, 2], act[:, 3]
    c = f * c_prev + i * g
    h = o * tanh(c)
    h_out.copy_(h)
    hx_out.copy_(h)
    c_out.copy_(c)


def lstm_step_back(dh_next, dout, acts, h, h_prev, c_prev, c, carry, dpre_out, dhw_out):
    dh = dh_next.float() + dout
    a = gates(acts, 4, dh.shape[1])
    i, f, g, o = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    tanh_c = tanh(c)
    dc = carry + dh * o * (1 - tanh_c * tanh_c)
    dpre_out.view_as(a).copy_(torch.stack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                           dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], 1))
    carry.copy_(dc * f)


def gru_step(pre, hw, b_hh, h_prev, c_prev, h_out, hx_out, c_out, acts_out):
    H = h_out.shape[1]
    x, hh = gates(pre, 3, H), gates(hw, 3, H) + b_hh.view(3, H)  # reset, update, new
    r, z = sigmoid(x[:, 0] + hh[:, 0]), sigmoid(x[:, 1] + hh[:, 1])
    n = tanh(x[:, 2] + r * hh[:, 2])
    h = (1 - z) * n + z * h_prev
    h_out.copy_(h)
    hx_out.copy_(h)
    acts_out.view(-1, 4, H).copy_(torch.stack([r, z, n, hh[:, 2]], 1))


def gru_step_back(dh_next, dout, acts, h, h_prev, c_prev, c, carry, dpre_out, dhw_out):
    dh = dh_next.float() + dout + carry  # carry: the next step's direct path, z * h_prev
    a = gates(acts, 4, dh.shape[1])
    r, z, n, h_n = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * h_n * r * (1 - r)
    dpre_out.view(-1, 3, dh.shape[1]).copy_(torch.stack([dr, dz, dn], 1))
    dhw_out.view(-1, 3, dh.shape[1]).copy_(torch.stack([dr, dz, dn * r], 1))
    carry.copy_(dh * z)


def rnn_tanh_step(pre, hw, b_hh, h_prev, c_prev, h_out, hx_out, c_out, acts_out):
    h = tanh(pre.float())
    h_out.copy_(h)
    hx_out.copy_(h)


def rnn_tanh_step_back(dh_next, dout, acts, h, h_prev, c_prev, c, carry, dpre_out, dhw_out):
    dpre_out.copy_((dh_next.float() + dout) * (1 - h * h))
