"""The log-space parallel scan of minGRU and minLSTM (Feng et al. 2024, appendix B),
after Heinsen, "Efficient Parallelization of a Ubiquitous Sequential Computation" (2023).

Both cells are the linear recurrence h_t = a_t * h_{t-1} + b_t with a_t, b_t > 0 read
from x_t alone, so h_t = A_t * (h_0 + sum_{k<=t} b_k / A_k) with A_t = prod_{k<=t} a_k.
In logs: log A = cumsum(log a); log(h_t - A_t h_0) = log A_t + logcumsumexp(log b - log A).

The appendix code scans the whole sequence at once; its log A_t grows with t, and float32
then rounds log h_t to about 6e-8 * |log A_t| (measured here: 2e-4 off the step loop at
T = 784, 2e-3 at T = 4096). :func:`chunked_scan_log` scans chunks of ``CHUNK`` steps in
parallel and carries h from one chunk to the next, so the rounding stays that of CHUNK
steps at any length; and every tensor it makes is a chunk's, small enough for the
allocator to reuse (a whole (T, B, H) tensor per elementwise op, 51 MB at T = 784,
B = H = 128, is fresh pages, a page fault per 4 KiB, on every op).

On a CPU, torch's ``cumsum`` and ``logcumsumexp`` along the first of three dims walk each
(b, h) column with a stride of B * H floats: 6.1 and 12.4 ms for one (64, 64, 128) chunk
(1 thread, Zen 5), most of a minGRU training step. :func:`cumsum_steps` and
:func:`logcumsumexp_steps` compute the same running sum and running log-sum-exp as one
vectorised op over (B, H) per step (0.45 ms for the cumsum), with their backward passes
written out, so the scan stays the appendix's log-space scan, only faster on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.cell_layers.stack import RecurrentCell, State

CHUNK = 64  # steps scanned in one piece: rounding of ~64 steps, a carry loop of T/64 steps


def g(x: Tensor) -> Tensor:
    """The paper's positive activation of the candidate: x + 0.5 for x >= 0, else sigmoid."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log(g(x)) without leaving log space for x < 0."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def running_sum(x: Tensor, reverse: bool = False) -> Tensor:
    """cumsum along dim 0 (from the end when ``reverse``), one vectorised add per step."""
    x = x.contiguous()
    out = torch.empty_like(x)
    order = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    previous = None
    for t in order:
        if previous is None:
            out[t].copy_(x[t])
        else:
            torch.add(x[t], out[previous], out=out[t])
        previous = t
    return out


class CumsumSteps(torch.autograd.Function):
    """``x.cumsum(0)``; its gradient is the running sum of the output's from the end."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return running_sum(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        return running_sum(grad, reverse=True)


class LogcumsumexpSteps(torch.autograd.Function):
    """``torch.logcumsumexp(x, 0)`` for finite x: y_t = logaddexp(y_{t-1}, x_t).

    Backward: dL/dx_k = sum_{t>=k} g_t exp(x_k - y_t) = exp(x_k - y_k) * S_k, with
    S_k = g_k + exp(y_k - y_{k+1}) * S_{k+1} from the end. y grows with t, so every factor
    exp(y_k - y_{k+1}) and exp(x_k - y_k) is at most 1: nothing overflows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        y = torch.empty_like(x)
        y[0].copy_(x[0])
        for t in range(1, x.shape[0]):
            torch.logaddexp(y[t - 1], x[t], out=y[t])
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        x, y = ctx.saved_tensors
        grad = grad.contiguous()
        decay = torch.exp(y[:-1] - y[1:])  # (T - 1, ...), each <= 1
        total = torch.empty_like(grad)
        total[-1].copy_(grad[-1])
        for t in range(x.shape[0] - 2, -1, -1):
            torch.addcmul(grad[t], decay[t], total[t + 1], out=total[t])
        return total.mul_(torch.exp(x - y))


def cumsum_steps(x: Tensor) -> Tensor:
    """cumsum along dim 0: the step loop above on a CPU, torch's elsewhere (a GPU scans a
    column in parallel)."""
    return CumsumSteps.apply(x) if x.device.type == "cpu" else x.cumsum(0)


def logcumsumexp_steps(x: Tensor) -> Tensor:
    """logcumsumexp along dim 0, as :func:`cumsum_steps` chooses."""
    return LogcumsumexpSteps.apply(x) if x.device.type == "cpu" else torch.logcumsumexp(x, 0)


def heinsen_scan_log(log_a: Tensor, log_b: Tensor) -> tuple[Tensor, Tensor]:
    """The appendix's scan along dim 0 from h_0 = 0: ``(h, A)``, h_t = a_t h_{t-1} + b_t
    and A_t = prod_{k<=t} a_k (what an initial state is multiplied by)."""
    log_a_star = cumsum_steps(log_a)  # log A_t
    h = torch.exp(log_a_star + logcumsumexp_steps(log_b - log_a_star))
    return h, log_a_star.exp()


def chunked_scan_log(inputs: Tensor, coefficients: Callable[[Tensor], tuple[Tensor, Tensor]],
                     h0: Tensor | None, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """h_t = a_t * h_{t-1} + b_t for every t -> (h (T, B, H), h_T (B, H)), where
    ``coefficients(piece)`` gives ``(log_a, log_b)`` (C, B, H) for a piece (C, B, *) of
    ``inputs`` (T, B, *); h0 (B, H) is the initial state (None: zero; any sign, as it
    enters linearly)."""
    pieces = []
    h = h0
    for piece in inputs.split(chunk, 0):  # one autograd node for all pieces
        local, decay = heinsen_scan_log(*coefficients(piece))  # from zero: (C, B, H)
        if h is not None:
            local = torch.addcmul(local, decay, h)
        pieces.append(local)
        h = local[-1]
    return torch.cat(pieces), h


class ParallelScanCell(RecurrentCell):
    """A cell whose gates read x_t alone (minGRU, minLSTM): one input projection of
    ``len(gates)`` blocks for all steps, the parallel scan in training and the step loop
    (the base class's) in eval mode. Subclasses give ``gates``, ``step`` and
    ``log_coefficients``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        blocks = len(self.gates)
        self.weight_ih = nn.Parameter(torch.empty(blocks * hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(blocks * hidden_size))
        bound = 1.0 / math.sqrt(input_size)  # nn.Linear(F, blocks * H)'s, as the authors'
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        """(T, B, blocks * H), in the gates' order; in the weights' dtype (float32 under
        bf16 autocast)."""
        return F.linear(x, self.weight_ih, self.bias).to(self.weight_ih.dtype)

    def scan(self, x: Tensor, state: State | None) -> tuple[State, State]:
        if not self.training:
            return super().scan(x, state)
        h, last = chunked_scan_log(x, self.log_coefficients, None if state is None else state[0])
        return (h,), (last,)

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log a, log b (C, B, H) of h_t = a_t * h_{t-1} + b_t, from x (C, B, F)."""
        raise NotImplementedError
