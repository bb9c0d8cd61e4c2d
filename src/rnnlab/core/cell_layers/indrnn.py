"""IndRNN: the independently recurrent neural network.

Li, Li, Cook, Zhu, Gao, "Independently Recurrent Neural Network (IndRNN): Building a
Longer and Deeper RNN", CVPR 2018; the authors' code is
github.com/Sunnydreamrain/IndRNN_pytorch.

Update, with ``u`` a vector (each unit recurs only on itself)::

    preactivation_t = W x_t + b + u * h_{t-1}
    h_t = relu(preactivation_t)

Initialisation and constraint, from the authors' code (``pixelMNIST/Indrnn_plainnet.py``,
``Indrnn_mnist_train.py``): u ~ Uniform(0, recurrent_max); W by
``kaiming_uniform_(a=8, mode="fan_in")``; b = 0; before each training batch u is
clipped to [-recurrent_max, recurrent_max] in place (their ``clip_weight``, run
before the forward pass). ``recurrent_max`` defaults to 1.0, the README's advice "for
simplicity, the constraint can always be set to [-1, 1]" (their sMNIST script's
own bound is MAG^(1/T) with MAG = 5, which needs the sequence length).

The gate declared for the explorer is the ``preactivation`` (where relu cuts a unit
off), as h_t itself is already the "hidden" trace.

Speed: :class:`IndRNNScan` runs the layer as one autograd function: one input matmul per
64 steps, then the elementwise recurrence into a preallocated output, two in-place
kernels per step, and a hand-written backward (four per step, and one matmul per 64
steps for the weight and input gradients) instead of an autograd graph of T small steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnlab.core.cell_layers.stack import CellStack, RecurrentCell, State

CHUNK = 64  # steps per input matmul in IndRNNScan


class IndRNNScan(torch.autograd.Function):
    """h_t = relu(W x_t + b + u * h_{t-1}) for every t: x (T, B, F), W (H, F), b (H,),
    u (H,), h0 (B, H) -> (h (T, B, H), h_T (B, H)); h_T apart, so that a reader of h_T
    alone sends back no (T, B, H) gradient.

    The input matmul runs ``CHUNK`` steps at a time, forward and backward (where it gives
    the weight and input gradients of those steps), so h is the one (T, B, H) tensor it
    makes: a whole-sequence one per intermediate, 51 MB at T = 784 and B = H = 128, would
    be fresh pages, a page fault per 4 KiB, on every batch."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, u: Tensor,
                h0: Tensor) -> tuple[Tensor, Tensor]:
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        T, B, _ = x.shape
        h = h0.new_empty(T, B, u.shape[0])
        previous = h0
        for start in range(0, T, CHUNK):
            pre = nn.functional.linear(x[start : start + CHUNK], weight, bias)  # (C, B, H)
            for t, pre_t in enumerate(pre, start):
                torch.addcmul(pre_t, u, previous, out=h[t])
                h[t].clamp_(min=0)  # relu, in place
                previous = h[t]
        ctx.save_for_backward(x, weight, u, h0, h)
        return h, h[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_last: Tensor | None):
        x, weight, u, h0, h = ctx.saved_tensors
        T, B, H = h.shape
        grad_x, grad_weight = torch.empty_like(x), torch.zeros_like(weight)
        grad_bias, grad_u = h.new_zeros(H), h.new_zeros(B, H)
        # dL/dh_t from beyond step t: u * dL/dpre_{t+1}, at first h_T's own gradient
        carry = torch.zeros_like(h0) if grad_last is None else grad_last.clone()
        for start in reversed(range(0, T, CHUNK)):
            stop = min(start + CHUNK, T)
            grad_pre = h.new_empty(stop - start, B, H)  # dL/dpre_t of this chunk's steps
            for t in range(stop - 1, start - 1, -1):
                g = grad_pre[t - start]
                if grad_h is None:
                    g.copy_(carry)  # dL/dh_t
                else:
                    torch.add(grad_h[t], carry, out=g)
                g.mul_(h[t] > 0)  # through relu
                grad_u.addcmul_(g, h[t - 1] if t > 0 else h0)
                torch.mul(g, u, out=carry)
            rows = grad_pre.view(-1, H)  # (C*B, H)
            grad_weight.addmm_(rows.t(), x[start:stop].reshape(-1, x.shape[2]))
            grad_bias += rows.sum(0)
            grad_x[start:stop] = (rows @ weight).view(stop - start, B, -1)
        return grad_x, grad_weight, grad_bias, grad_u.sum(0), carry


class IndRNNCell(RecurrentCell):
    gates = ("preactivation",)

    def __init__(self, input_size: int, hidden_size: int, recurrent_max: float = 1.0):
        super().__init__(input_size, hidden_size)
        self.recurrent_max = recurrent_max
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # W
        self.bias = nn.Parameter(torch.zeros(hidden_size))  # b
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))  # u, the authors' name
        nn.init.kaiming_uniform_(self.weight_ih, a=8, mode="fan_in")
        nn.init.uniform_(self.weight_hh, 0.0, recurrent_max)

    def project(self, x: Tensor) -> Tensor:
        """(T, B, H) in the weights' dtype (float32 under bf16 autocast)."""
        return nn.functional.linear(x, self.weight_ih, self.bias).to(self.weight_ih.dtype)

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        pre = torch.addcmul(projected, self.weight_hh, state[0])  # (B, H)
        return (torch.relu(pre),), {"preactivation": pre}

    def constrain(self) -> None:
        """Clip u into [-recurrent_max, recurrent_max] when an update moved it out (only
        then: clipping a weight a pending graph saved would break its backward)."""
        with torch.no_grad():
            if self.weight_hh.abs().max() > self.recurrent_max:
                self.weight_hh.clamp_(-self.recurrent_max, self.recurrent_max)

    def scan(self, x: Tensor, state: State | None) -> tuple[State, State]:
        if self.training:
            self.constrain()
        h0 = x.new_zeros(x.shape[1], self.hidden_size) if state is None else state[0]
        weight, bias = self.weight_ih, self.bias
        if torch.is_autocast_enabled(x.device.type):  # its matmul dtype, float32 recurrence
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        h, last = IndRNNScan.apply(x, weight, bias, self.weight_hh, h0.to(self.weight_hh.dtype))
        return (h,), (last,)


class IndRNN(CellStack):
    """IndRNN layers with ``nn.RNN``'s interface (option: ``recurrent_max``)."""

    cell_type = IndRNNCell
