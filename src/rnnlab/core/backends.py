"""Training backends for the recurrent layer: PyTorch's own ``nn.RNN/LSTM/GRU``
(``stock``) or a hand-written step loop whose gate arithmetic is fused by
``torch.compile`` (``compiled``), each in float32 or bfloat16 (``--precision``).

The compiled path keeps the ``nn.*`` module and its parameters (``weight_ih_l0``,
``weight_hh_l0_reverse``, ...), so state dicts and checkpoints do not depend on the
backend; it replaces how a training step's forward and backward are computed
(:class:`_RecurrentLayer`, one autograd function per layer, both directions):

- forward, per step: one matmul ``[x_t, 1, h_{t-1}] @ [W_ih | b | W_hh]^T`` (the
  GRU: ``h_{t-1} @ W_hh^T``, its input part for all steps in one matmul before the
  loop), then one compiled kernel for all the gate arithmetic, which writes h, c
  and the activations the backward pass needs straight into preallocated
  (T, B, ...) buffers; the step inputs ``[x_t, 1, h_{t-1}]`` of all steps live in
  one buffer (:class:`Layout`);
- backward, per step: one kernel and one matmul ``dpre @ W_hh``; then every weight
  and bias gradient of all steps in one matmul per direction, ``dpre^T @ [x, 1, h]``,
  instead of T small ones and a separate bias sum.

What it does not cover, and hands to the stock module: variable-length batches
(``lengths`` given: packed sequences), forward passes without gradients (stock is
the faster forward: docs/benchmarks.md), LSTM projections, ``bias=False``; the
initial state is always zero, as rnnlab's models use it. bfloat16
(``precision="bf16"``) runs the matmuls in bfloat16 and keeps the gate arithmetic,
h and c, and the master weights in float32; for the stock module it is
``torch.autocast("cpu", dtype=torch.bfloat16)``. On a CPU without bfloat16 matmul
hardware bf16 trains slower than fp32, and :func:`use_backend` warns so
(:class:`PerformanceWarning`).

The compiled path knows no cell by itself: a layer's cell declaration
(:func:`rnnlab.core.cells.cell_of`) gives its gates, cell state and step kernels; a
cell that declares no kernels trains on its stock module.

:func:`use_backend` attaches a :class:`RecurrentRunner` to every recurrent layer
of a model; :func:`rnnlab.core.models.run_recurrent` calls it when present. ``auto``
(the default) takes the path measured fastest on this machine for the layer's shapes
(:mod:`rnnlab.core.autotune`; :func:`auto_choice`), on the CPU; elsewhere stock. With
precision ``auto`` (the default too) it times each path in fp32 and, where the CPU has
bfloat16 matmul hardware, in bf16, and trains in bf16 only where that was faster by more
than the timing noise; the run record says which precision and path trained, and why.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from rnnlab.core.autotune import (
    Choice,
    Measurer,
    Timing,
    TuneCache,
    TuneKey,
    choose,
    pick_precision,
    time_steps,
)
from rnnlab.core.cells import Cell, cell_of, get_cell
from rnnlab.core.errors import check_choice
from rnnlab.core.models import final_hidden

BACKENDS = ("auto", "stock", "compiled")
# auto: fp32, or bf16 where the CPU has bf16 matmul hardware and bf16 timed faster (with
# --backend auto); fp16: with a gradient scaler (core.train), for CUDA
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# CPU flags of bfloat16 matmul hardware; without either, oneDNN emulates bf16 matmuls
# and they run slower than float32 ones.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


class PerformanceWarning(UserWarning):
    """A setting that works but will likely run slower than its alternative."""


class Workspace:
    """Big per-batch buffers kept for the next batch instead of freed: fresh pages cost
    the kernel a page fault each (thousands per step at batch 500). A buffer returns
    only when the backward pass that read it has finished; one still held by a
    pending graph is never handed out again (the next forward allocates a new one)."""

    def __init__(self):
        self.free: dict[tuple, list[Tensor]] = {}

    def take(self, shape: tuple, dtype: torch.dtype) -> Tensor:
        stack = self.free.get((shape, dtype))
        return stack.pop() if stack else torch.empty(shape, dtype=dtype)

    KEEP = 2  # buffers kept per (shape, dtype); shapes kept: the most recent 8
    SHAPES = 8

    def give(self, *buffers: Tensor | None) -> None:
        for b in buffers:
            if b is None:
                continue
            key = (tuple(b.shape), b.dtype)
            stack = self.free.pop(key, [])  # re-inserted last: the most recently used shape
            self.free[key] = [*stack, b][-self.KEEP :]
            while len(self.free) > self.SHAPES:
                del self.free[next(iter(self.free))]


def _onednn_linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w^T`` by oneDNN's linear primitive; ``w`` plain (N, K) or reordered."""
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def onednn_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` by oneDNN's linear primitive, ``b`` reordered into its layout on the fly."""
    return _onednn_linear(a, b.t())


class StepMatmul:
    """``x @ w`` for every step of one batch, ``w`` (K, N) fixed for the batch. ``onednn``:
    through oneDNN's linear with ``w`` reordered once into its blocked layout, which every
    step then reuses; else ``torch.mm`` (MKL's sgemm on x86). Which is faster depends on
    the CPU: MKL runs AVX2 code on AMD's AVX-512 CPUs, oneDNN its own AVX-512 code, twice
    as fast there (docs/benchmarks.md); :func:`onednn_is_faster` times both."""

    def __init__(self, w: Tensor, rows: int, onednn: bool):
        self.w = w
        self.packed = (torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), rows)
                       if onednn else None)

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is None:
            return torch.mm(x, self.w)
        return _onednn_linear(x, self.packed)


def onednn_is_faster(rows: int, hidden: int, gates: int, dtype: torch.dtype,
                     repeats: int = 5) -> tuple[bool, str]:
    """Whether oneDNN's packed linear beats ``torch.mm`` at a layer's per-step recurrent
    matmul, (rows, H) @ (H, G*H), timed here (best of ``repeats`` rounds of 10 calls
    each, about 10 ms), and the two times in words."""
    if not torch.backends.mkldnn.is_available():
        return False, "torch.mm (no oneDNN in this torch)"
    h = torch.randn(rows, hidden).to(dtype)
    w = torch.randn(hidden, gates * hidden).to(dtype)
    try:
        paths = {"oneDNN": StepMatmul(w, rows, True), "torch.mm": StepMatmul(w, rows, False)}
        seconds = {name: _best_time(fn, h, repeats) for name, fn in paths.items()}
    except RuntimeError as err:  # a oneDNN without this primitive or dtype
        return False, f"torch.mm (oneDNN failed: {error_line(err)})"
    faster = seconds["oneDNN"] < seconds["torch.mm"]
    times = ", ".join(f"{name} {1e6 * s / 10:.0f} us" for name, s in seconds.items())
    return faster, f"{'oneDNN' if faster else 'torch.mm'} (measured: {times})"


def _best_time(fn: Callable, x: Tensor, repeats: int) -> float:
    fn(x)  # warm-up: oneDNN creates its primitive on the first call
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(10):
            fn(x)
        best = min(best, time.perf_counter() - started)
    return best


def fresh_copy(fn: Callable, tag: str) -> Callable:
    """``fn`` with its own code object: torch.compile keeps its compiled graphs (and
    its recompile limit) per code object, so each layer shape gets its own few."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class Kernels:
    """The step and backward-step kernels of one cell (its declaration's
    :class:`~rnnlab.core.cell_kernels.CellKernels`) for one layer shape, compiled (on
    first call) or eager. A kernel that fails to compile later (a new shape) falls back
    to its eager version for the rest of the batch and sets ``failed``, so the caller
    can switch to stock; it never raises."""

    def __init__(self, cell: Cell, compiled: bool, tag: str = "eager"):
        if cell.kernels is None:
            raise ValueError(f"the {cell.name} cell declares no compiled kernels")
        self.cell = cell
        step, back = cell.kernels.step, cell.kernels.step_back
        self.eager_step, self.eager_back = step, back
        self.failed: str | None = None
        self.workspace = Workspace()
        self.compile_seconds = 0.0  # the first compile's, set by compile_kernels
        self.onednn = False  # matmuls by oneDNN, not torch.mm (StepMatmul; compile_kernels)
        if compiled:
            # dynamic=None: H stays a constant in the kernels; the batch size turns symbolic
            # the first time it changes (the last, smaller batch of an epoch)
            self.step = torch.compile(fresh_copy(step, tag), fullgraph=True)
            self.step_back = torch.compile(fresh_copy(back, tag), fullgraph=True)
        else:
            self.step, self.step_back = step, back

    @property
    def mm(self) -> Callable[[Tensor, Tensor], Tensor]:
        """``a @ b`` by the matmul route this layer measured faster."""
        return onednn_matmul if self.onednn else torch.mm

    def run_step(self, *args) -> None:
        if self.failed is None:
            try:
                return self.step(*args)
            except Exception as err:  # any compiler error: finish eagerly
                self.fail(err)
        self.eager_step(*args)

    def run_back(self, *args) -> None:
        if self.failed is None:
            try:
                return self.step_back(*args)
            except Exception as err:
                self.fail(err)
        self.eager_back(*args)

    def fail(self, err: Exception) -> None:
        self.failed = f"{type(err).__name__}: {error_line(err)}"
        warn(f"a compiled kernel failed ({self.failed}); "
             "finishing this batch eagerly, then stock")


# -- one layer, both directions, forward and backward ----------------------------------
@dataclass(frozen=True)
class Layout:
    """Columns of the per-step matmul input ``xh`` (T+2, B, C); time t is slot t+1.

    One direction: ``[x | 1 | h_fwd]``; two: ``[h_bwd | x | 1 | h_fwd]``. Slot t+1
    holds x_t and the h each direction had before step t (h_{t-1} forward, h_{t+1}
    backward), so one matmul per step reads ``[x_t, 1, h_{t-1}]`` against
    ``[W_ih | b | W_hh]`` (the backward direction ``[h_{t+1}, x_t, 1]`` against
    ``[W_hh | W_ih | b]``), and after the loop one matmul per direction,
    ``dpre^T @ xh``, gives every weight and bias gradient at once.
    """

    D: int
    F: int
    H: int

    @property
    def x0(self) -> int:
        return self.H if self.D == 2 else 0

    @property
    def one(self) -> int:  # the column of ones
        return self.x0 + self.F

    @property
    def width(self) -> int:
        return self.one + 1 + self.H

    def cols(self, d: int) -> slice:
        """The matmul input columns of direction d."""
        return slice(self.x0, self.width) if d == 0 else slice(0, self.one + 1)

    def h_cols(self, d: int) -> slice:
        return slice(self.one + 1, self.width) if d == 0 else slice(0, self.H)

    def h_slot(self, d: int, t: int) -> int:
        """Where direction d writes its h_t: the slot of the step that reads it next."""
        return t + 2 if d == 0 else t

    def joined(self, d: int, w_ih: Tensor, w_hh: Tensor, b: Tensor) -> Tensor:
        """The weights in direction d's column order: (G*H, F+1+H)."""
        parts = [w_ih, b[:, None], w_hh] if d == 0 else [w_hh, w_ih, b[:, None]]
        return torch.cat(parts, 1)

    def split(self, d: int, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A gradient in direction d's column order back to ``(d_w_ih, d_b, d_w_hh)``."""
        F, H = self.F, self.H
        if d == 0:
            return grad[:, :F], grad[:, F], grad[:, F + 1 :]
        return grad[:, H : H + F], grad[:, H + F], grad[:, :H]


def _steps(d: int, T: int) -> range:
    return range(T) if d == 0 else range(T - 1, -1, -1)


class _RecurrentLayer(torch.autograd.Function):
    """One layer (one or two directions) over time-major ``x`` (T, B, F) from zero state.

    Returns ``out`` (T, B, D*H), float32, the forward direction in ``[..., :H]``, and
    ``h_n`` (D, B, H), each direction's last h, as a separate output: a classifier
    that reads only h_n then passes no gradient for ``out`` at all (rather than a
    (T, B, D*H) tensor of zeros). The cell is ``kernels.cell``.
    """

    @staticmethod
    def forward(ctx, kernels: Kernels, dtype: torch.dtype, x: Tensor, *weights: Tensor):
        cell, split = kernels.cell, kernels.cell.kernels.split
        D = len(weights) // 4
        w_ih, w_hh, b_ih, b_hh = (weights[k::4] for k in range(4))  # per direction
        T, B, F = x.shape
        H = w_hh[0].shape[1]
        GH, A, lay = cell.num_gates * H, cell.kernels.saved * H, Layout(D, F, H)
        ws = kernels.workspace
        xh = ws.take((T + 2, B, lay.width), dtype)
        xh[1 : T + 1, :, lay.x0 : lay.one] = x
        xh[1 : T + 1, :, lay.one] = 1
        xh[1, :, lay.h_cols(0)] = 0  # h before the first forward step
        if D == 2:
            xh[T, :, lay.h_cols(1)] = 0  # h before the first backward step
        if split:  # GRU: input part for all steps at once; the recurrent part per step
            w_x = torch.cat([torch.cat([w_ih[d], b_ih[d][:, None]], 1) for d in range(D)]).to(dtype)
            x_in = xh[1 : T + 1, :, lay.x0 : lay.one + 1].reshape(T * B, F + 1)
            pre_all = kernels.mm(x_in, w_x.t()).view(T, B, D * GH)
            w_step = [w.to(dtype).t() for w in w_hh]  # (H, G*H)
        else:
            w_step = [lay.joined(d, w_ih[d], w_hh[d], b_ih[d] + b_hh[d]).to(dtype).t()
                      for d in range(D)]
        step_mm = [StepMatmul(w, B, kernels.onednn) for w in w_step]
        out = x.new_empty(T, B, D * H, dtype=torch.float32)
        c = ws.take((T, B, D * H), torch.float32) if cell.has_cell_state else None
        acts = ws.take((T, B, D * A), torch.float32) if A else None
        zero = x.new_zeros(B, D * H, dtype=torch.float32)  # h and c before the first step
        nothing = [None] * T
        for d in range(D):
            hs, gs, ss = _block(d, H), _block(d, GH), _block(d, A)
            # per-step views, made in one call each: (B, ...) slices of the (T, B, ...) buffers
            outs, slots = out[:, :, hs].unbind(0), xh[:, :, lay.h_cols(d)].unbind(0)
            cs = c[:, :, hs].unbind(0) if c is not None else nothing
            saved = acts[:, :, ss].unbind(0) if A else nothing
            inputs = slots if split else xh[:, :, lay.cols(d)].unbind(0)
            h_prev, c_prev = zero[:, hs], (zero[:, hs] if c is not None else None)
            for t in _steps(d, T):
                if split:
                    pre, hw = pre_all[t, :, gs], step_mm[d](inputs[t + 1])
                else:
                    pre, hw = step_mm[d](inputs[t + 1]), None
                kernels.run_step(pre, hw, b_hh[d] if split else None, h_prev, c_prev,
                                 outs[t], slots[lay.h_slot(d, t)], cs[t], saved[t])
                h_prev, c_prev = outs[t], cs[t]
        ctx.kernels, ctx.dtype, ctx.layout, ctx.T = kernels, dtype, lay, T
        ctx.save_for_backward(xh, out, c, acts, *w_ih, *w_hh)
        ctx.done = False
        ctx.set_materialize_grads(False)
        h_n = torch.stack([out[T - 1, :, :H]] + ([out[0, :, H:]] if D == 2 else []))
        return out, h_n

    @staticmethod
    def backward(ctx, dout: Tensor | None, dh_n: Tensor | None):
        kernels, dtype, lay, T = ctx.kernels, ctx.dtype, ctx.layout, ctx.T
        cell, split = kernels.cell, kernels.cell.kernels.split
        if ctx.done:
            raise RuntimeError("the compiled recurrent backend runs each backward pass once "
                               "(no retain_graph); use `backend` stock")
        ctx.done = True
        xh, out, c, acts, *ws = ctx.saved_tensors
        D, F, H = lay.D, lay.F, lay.H
        w_ih, w_hh = ws[:D], ws[D:]
        B, GH, A = out.shape[1], cell.num_gates * H, cell.kernels.saved * H
        back_mm = [StepMatmul(w.to(dtype), B, kernels.onednn) for w in w_hh]  # (G*H, H)
        dout = dout.float().contiguous() if dout is not None else None
        pool = kernels.workspace
        dpre = pool.take((T, B, D * GH), dtype)
        # what multiplies W_hh; the GRU's own buffer direction-major, so that each direction's
        # weight gradient reads it without a copy
        dhw = pool.take((D, T, B, GH), dtype) if split else dpre
        zero = out.new_zeros(B, D * H)
        # nothing comes from after the last step but h_n's gradient
        no_dh = out.new_zeros(B, H, dtype=dtype)
        nothing = [None] * T
        for d in range(D):
            hs, gs, ss = _block(d, H), _block(d, GH), _block(d, A)
            outs, dpres = out[:, :, hs].unbind(0), dpre[:, :, gs].unbind(0)
            douts = dout[:, :, hs].unbind(0) if dout is not None else [zero[:, hs]] * T
            dhws = dhw[d].unbind(0) if split else nothing
            cs = c[:, :, hs].unbind(0) if c is not None else nothing
            saved = acts[:, :, ss].unbind(0) if A else nothing
            steps = list(_steps(d, T))
            carry = out.new_zeros(B, H)
            for k in range(T - 1, -1, -1):
                t, prev = steps[k], (steps[k - 1] if k > 0 else None)
                if k < T - 1:
                    dh_next = back_mm[d]((dhws if split else dpres)[steps[k + 1]])
                else:
                    dh_next = dh_n[d].to(dtype) if dh_n is not None else no_dh
                h_prev = outs[prev] if prev is not None else zero[:, hs]
                c_prev = (cs[prev] if prev is not None else zero[:, hs]) if c is not None else None
                kernels.run_back(dh_next, douts[t], saved[t], outs[t], h_prev, c_prev,
                                 cs[t], carry, dpres[t], dhws[t])
        grads = _weight_grads(lay, xh[1 : T + 1], dpre, dhw if split else None, kernels.onednn)
        dx = None
        if ctx.needs_input_grad[2]:
            dx = kernels.mm(dpre.view(T * B, D * GH), torch.cat(w_ih).to(dtype))
            dx = dx.view(T, B, F).float()
        pool.give(xh, c, acts, dpre, dhw if split else None)  # this step's buffers serve the next
        return (None, None, dx, *grads)


def _block(d: int, size: int) -> slice:
    """Direction d's block of ``size`` columns."""
    return slice(d * size, (d + 1) * size)


def _gram(a: Tensor, b: Tensor, onednn: bool) -> Tensor:
    """``a^T @ b`` in float32; by oneDNN as ``(b^T @ a)^T``, its faster order, from dense
    copies (a direction's columns of a two-direction buffer sent oneDNN's matmul to its
    slow reference code: seconds a call)."""
    if onednn:
        return onednn_matmul(b.t().contiguous(), a.contiguous()).t().float().contiguous()
    return torch.mm(a.t(), b).float()


def _weight_grads(lay: Layout, steps_in: Tensor, dpre: Tensor, dhw: Tensor | None,
                  onednn: bool = False) -> list[Tensor]:
    """The weight gradients of all steps: one matmul per direction of the gate gradients
    against every step's matmul input ``steps_in`` (T, B, C), ``[x, 1, h_prev]``. With
    ``dhw`` (the GRU's separate recurrent part, (D, T, B, G*H)), ``[x, 1]`` goes against the
    input gradients and ``h_prev`` against the recurrent ones. In the order the weights
    came: per direction w_ih, w_hh, b_ih, b_hh."""
    D, F = lay.D, lay.F
    T, B, DGH = dpre.shape
    rows, GH = T * B, DGH // D
    grads: list[Tensor] = []
    if dhw is not None:
        x_in = steps_in[:, :, lay.x0 : lay.one + 1].reshape(rows, F + 1)
        g_x = _gram(dpre.view(rows, D * GH), x_in, onednn)
        for d in range(D):
            gs, hs = _block(d, GH), lay.h_cols(d)
            dhw_d = dhw[d].view(rows, GH)
            # h_prev's columns only (the x columns' products would be thrown away)
            d_w_hh = _gram(dhw_d, steps_in[:, :, hs].reshape(rows, lay.H), onednn)
            d_b_hh = torch.sum(dhw_d, 0, dtype=torch.float32)
            grads += [g_x[gs, :F], d_w_hh, g_x[gs, F], d_b_hh]
        return grads
    for d in range(D):
        cols = lay.cols(d)
        g = _gram(dpre[:, :, _block(d, GH)].reshape(rows, GH),
                  steps_in[:, :, cols].reshape(rows, cols.stop - cols.start), onednn)
        d_w_ih, d_b, d_w_hh = lay.split(d, g)
        grads += [d_w_ih, d_w_hh, d_b, d_b]
    return grads


# -- the runner attached to a module ----------------------------------------------------
def layer_weights(rnn: nn.RNNBase, layer: int) -> list[Tensor]:
    """``[w_ih, w_hh, b_ih, b_hh]`` per direction, by ``nn.*``'s own parameter names."""
    weights = []
    for suffix in ([""] if not rnn.bidirectional else ["", "_reverse"]):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            weights.append(getattr(rnn, f"{name}_l{layer}{suffix}"))
    return weights


def supports(rnn: nn.RNNBase) -> str | None:
    """Why the compiled path cannot run ``rnn``, or None when it can."""
    cell = cell_of(rnn)
    if cell is None:
        return f"cell mode {rnn.mode}"
    if cell.kernels is None:
        return f"the {cell.name} cell (it declares no compiled kernels)"
    if not rnn.bias:
        return "bias=False"
    if getattr(rnn, "proj_size", 0):
        return "LSTM projections"
    if not rnn.batch_first:
        return "batch_first=False"
    if rnn.weight_hh_l0.device.type != "cpu":
        return f"a model on {rnn.weight_hh_l0.device} (its kernels are the CPU's)"
    return None


def compiled_forward(rnn: nn.RNNBase, x: Tensor, kernels: Kernels,
                     dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``rnn(x)`` from zero state by the hand-written loop with ``kernels`` (made for
    ``rnn``'s cell): ``(out (B, T, D*H), h_n (L*D, B, H))``."""
    layer_in = x.transpose(0, 1).contiguous()  # (T, B, F) time-major
    finals = []  # h_n of each layer, (D, B, H)
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout and rnn.training:
            layer_in = nn.functional.dropout(layer_in, rnn.dropout, training=True)
        weights = layer_weights(rnn, layer)
        out, h_n = _RecurrentLayer.apply(kernels, dtype, layer_in, *weights)  # (T, B, D*H)
        finals.append(h_n)
        layer_in = out
    return layer_in.transpose(0, 1), torch.cat(finals)  # (B, T, D*H), (L*D, B, H)


def train_gflop(cell: str, batch: int, steps: int, features: int, hidden: int, layers: int = 1,
                directions: int = 1) -> float:
    """Matmul GFLOP of one training step: 3x the forward's 2*B*T*G*H*(F+H) per layer and
    direction."""
    gates = get_cell(cell).num_gates
    forward = 0.0
    for layer in range(layers):
        f_in = features if layer == 0 else directions * hidden
        forward += directions * 2.0 * batch * steps * gates * hidden * (f_in + hidden)
    return 3 * forward / 1e9


def error_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:160]


def warn(message: str) -> None:
    sys.stderr.write(f"rnnlab: warning: {message}\n")


# per cell and layer shape, once per process; None: compiling failed
_KERNELS: dict[tuple, Kernels | None] = {}


def compile_kernels(rnn: nn.RNNBase, dtype: torch.dtype, example: Tensor,
                    log: Callable[[str], None] | None = None) -> Kernels | None:
    """Compiled kernels for ``rnn``'s layers in ``dtype``, compiled (and timed) on first
    use by a forward and backward pass of ``example``'s shape (B, T, F) on a copy of
    one layer; None when compiling fails (a one-line warning says why; use stock).
    ``rnn``'s cell must declare kernels (:func:`supports`)."""
    cell = cell_of(rnn)
    mode, (batch, steps, features) = rnn.mode, example.shape
    # what the kernels specialise on; the batch and features too, so that a process training
    # many shapes (a notebook, the benchmark) gives each its own code object and torch.compile
    # recompile limit (8 per code object: shared by every shape, the limit was hit)
    key = (cell.name, dtype, rnn.bidirectional, rnn.hidden_size, features, batch)
    if key in _KERNELS:
        return _KERNELS[key]
    directions = 2 if rnn.bidirectional else 1
    tag = (f"{mode.lower()}_{str(dtype).removeprefix('torch.')}_d{directions}"
           f"_h{rnn.hidden_size}_f{features}_b{batch}")
    kernels = Kernels(cell, compiled=True, tag=tag)
    kernels.onednn, matmul = onednn_is_faster(batch, rnn.hidden_size, cell.num_gates, dtype)
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):  # without drawing from training's random stream
            _probe(rnn, kernels, dtype, batch, steps)
        if kernels.failed:
            raise RuntimeError(kernels.failed)
    except Exception as err:  # any compiler failure means: use stock
        _KERNELS[key] = None
        warn(f"torch.compile failed for {mode} ({type(err).__name__}: {error_line(err)}); "
             "using the stock backend")
        return None
    _KERNELS[key] = kernels
    seconds = kernels.compile_seconds = time.perf_counter() - started
    (log or _stderr)(f"rnnlab: compiled the {mode} step kernels in {seconds:.1f}s; "
                     f"matmuls by {matmul}")
    return kernels


def _probe(rnn: nn.RNNBase, kernels: Kernels, dtype: torch.dtype, batch: int, steps: int) -> None:
    """One forward and backward pass of a fresh one-layer copy of ``rnn``: the real
    batch and sequence length, so training's first batches hit compiled graphs."""
    probe = kernels.cell.make(input_size=rnn.input_size, hidden_size=rnn.hidden_size,
                              bidirectional=rnn.bidirectional)
    out, h_n = compiled_forward(probe, torch.randn(batch, steps, rnn.input_size), kernels, dtype)
    (out.sum() + h_n.sum()).backward()


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


class RecurrentRunner:
    """How one recurrent layer runs: backend and precision; called as ``runner(rnn, x, lengths)``.

    ``backend`` is ``stock``, ``compiled`` or ``auto``; ``auto`` decides at the first
    full-length training batch (see :func:`auto_choice`), and so does ``precision`` auto
    with it (fp32 until then, and with a named backend). Batches with ``lengths``
    (packed sequences) and forward passes without gradients always run stock.
    ``choice`` says which path trains and why (None until ``auto`` has decided).
    """

    def __init__(self, backend: str = "stock", precision: str = "fp32",
                 train_steps: int | None = None, log: Callable[[str], None] | None = None,
                 tune_cache: TuneCache | None = None):
        check_choice("backend", backend, BACKENDS)
        check_choice("precision", precision, PRECISIONS)
        self.backend, self.precision, self.train_steps = backend, precision, train_steps
        self.log, self.tune_cache = log, tune_cache
        self.kernels: Kernels | None = None
        # what the layer runs in: auto's pick replaces fp32 at the first batch
        self.run_precision = "fp32" if precision == "auto" else precision
        self.resolved: str | None = None if backend == "auto" else backend  # set at the first batch
        self.choice: Choice | None = (None if backend == "auto" else
                                      Choice(backend, "forced", precision=self.run_precision))

    def __call__(self, rnn: nn.RNNBase, x: Tensor, lengths: Tensor | None, stock: Callable):
        # without gradients (evaluation) stock is the faster forward (docs/benchmarks.md)
        if self.kernels is not None and self.kernels.failed:  # a kernel failed in the last batch
            self.fall_back("kernel failed", self.kernels.failed)
        full_training_batch = lengths is None and torch.is_grad_enabled()
        if full_training_batch and self.resolve(rnn, x) == "compiled":
            return compiled_forward(rnn, x, self.kernels, DTYPES[self.run_precision])
        with self.autocast(x.device.type):
            out, h_n = stock(rnn, x, lengths)
        return out.float(), h_n.float()

    def autocast(self, device_type: str):
        return precision_context(self.run_precision, device_type)

    def resolve(self, rnn: nn.RNNBase, x: Tensor) -> str:
        if self.resolved is None:
            self.choice = auto_choice(rnn, x, self.train_steps, self.precision, self.log,
                                      self.tune_cache)
            self.resolved, self.run_precision = self.choice.path, self.choice.precision
        if self.resolved == "compiled" and self.kernels is None:
            reason = supports(rnn)
            if reason is not None:
                if self.backend == "compiled":
                    warn(f"the compiled backend does not support {reason}; using stock")
                self.fall_back("not supported", reason)
                return self.resolved
            self.kernels = compile_kernels(rnn, DTYPES[self.run_precision], x, self.log)
            if self.kernels is None:
                self.fall_back("compile failed")
        return self.resolved

    def fall_back(self, why: str, detail: str = "") -> None:
        """Train on stock from now on, and say why in ``choice``."""
        self.resolved, self.kernels = "stock", None
        self.choice = replace(self.choice or Choice("stock", why), path="stock", why=why,
                              detail=detail)


def precision_context(precision: str, device_type: str):
    """Autocast to ``precision`` (nothing for fp32): what bf16 and fp16 mean for stock."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=DTYPES[precision])


def auto_choice(rnn: nn.RNNBase, x: Tensor, train_steps: int | None, precision: str = "fp32",
                log: Callable[[str], None] | None = None,
                cache: TuneCache | None = None) -> Choice:
    """``auto``'s path for ``rnn`` at ``x``'s shape (B, T, F) in a run of ``train_steps``
    steps, in ``precision``; for ``auto`` precision, the path and precision among
    :func:`auto_precisions` (:func:`rnnlab.core.autotune.pick_precision`)."""
    if precision != "auto":
        return path_choice(rnn, x, train_steps, precision, log, cache)
    choices: dict[str, Choice] = {}
    candidates = auto_precisions()
    for candidate in candidates:
        choices[candidate] = path_choice(rnn, x, train_steps, candidate, log, cache,
                                         timings=len(candidates))
        if not choices[candidate].timed:  # a short run, off the CPU, ...: fp32, untimed
            break
    choice = pick_precision(choices)
    if len(choices) > 1:
        (log or _stderr)(f"rnnlab: training in {choice.precision} on {choice.path}")
    return choice


def auto_precisions(path: str = CPUINFO) -> tuple[str, ...]:
    """The precisions ``--precision auto`` times: fp32, and bf16 where the CPU's flags
    show bf16 matmul hardware (:func:`bf16_hardware`; elsewhere oneDNN emulates it, slower;
    where the flags are unknown, fp32 alone)."""
    return ("fp32", "bf16") if bf16_hardware(path) else ("fp32",)


def path_choice(rnn: nn.RNNBase, x: Tensor, train_steps: int | None, precision: str,
                log: Callable[[str], None] | None = None,
                cache: TuneCache | None = None, timings: int = 1) -> Choice:
    """``auto``'s path for ``rnn`` trained in ``precision``: stock off the CPU (cuDNN's or
    MPS's own), where compiled cannot run the layer, or when the run's length is unknown;
    otherwise the measured or cached choice (:func:`rnnlab.core.autotune.choose`;
    ``cache``: the user cache by default; ``timings``: how many precisions are timed)."""
    if x.device.type != "cpu":
        return Choice("stock", "off the CPU", detail=f"{x.device.type}: the stock module's own",
                      precision=precision)
    reason = supports(rnn)
    if reason is not None:
        return Choice("stock", "not supported", detail=reason, precision=precision)
    if train_steps is None:
        return Choice("stock", "run length unknown", precision=precision)
    measurer = layer_measurer(rnn, tuple(x.shape), precision, log)
    return choose(tune_key(rnn, x.shape, precision), train_steps, measurer,
                  cache if cache is not None else TuneCache(), log or _stderr, timings)


def tune_key(rnn: nn.RNNBase, shape: tuple[int, ...], precision: str,
             device: str = "cpu") -> TuneKey:
    """The cache key of ``rnn`` trained on (B, T, F) batches of ``shape`` here."""
    batch, steps, features = shape
    return TuneKey(cell=cell_of(rnn).name, bidirectional=rnn.bidirectional,
                   layers=rnn.num_layers, batch=batch, steps=steps, features=features,
                   hidden=rnn.hidden_size, threads=torch.get_num_threads(),
                   precision=precision, device=device)


def layer_measurer(rnn: nn.RNNBase, shape: tuple[int, ...], precision: str,
                   log: Callable[[str], None] | None = None) -> Measurer:
    """Times training steps (forward and backward of the layer, the loss reading every
    output and h_n) of ``rnn`` on a random (B, T, F) batch of ``shape``: each timing on a
    deep copy, with a private generator, inside ``fork_rng``, so that the run's weights,
    gradients and random streams are untouched."""
    dtype = DTYPES[precision]

    def estimate() -> float:  # stock's seconds per step: one warm-up, one timed
        with private_layer(rnn, shape) as (clone, x):
            step = stock_step(clone, x, precision)
            step()
            started = time.perf_counter()
            step()
            return time.perf_counter() - started

    def measure(paths: tuple[str, ...]) -> Timing:
        with private_layer(rnn, shape) as (clone, x):
            steps: dict[str, Callable[[], None]] = {}
            kernels = None
            if "stock" in paths:
                steps["stock"] = stock_step(clone, x, precision)
            if "compiled" in paths:
                kernels = compile_kernels(clone, dtype, x, log)
                if kernels is not None:
                    steps["compiled"] = compiled_step(clone, x, kernels, dtype)
            ms_per_step = time_steps(steps)
            if kernels is not None and kernels.failed:  # finished eagerly: not its time
                ms_per_step.pop("compiled")
            return Timing(ms_per_step, kernels.compile_seconds if kernels is not None else 0.0)

    return Measurer(estimate, measure)


@contextlib.contextmanager
def private_layer(rnn: nn.RNNBase, shape: tuple[int, ...]) -> Iterator[tuple[nn.RNNBase, Tensor]]:
    """A deep copy of ``rnn`` (without its runner) and a random batch of ``shape`` from a
    private generator; the global random state is restored on leaving (dropout draws)."""
    runner = runner_of(rnn)
    with torch.random.fork_rng(devices=[]):
        clone = copy.deepcopy(rnn, memo={id(runner): None} if runner is not None else None)
        clone.__dict__.pop("rnnlab_runner", None)
        clone.train()
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        yield clone, x


def stock_step(rnn: nn.RNNBase, x: Tensor, precision: str) -> Callable[[], None]:
    def step() -> None:
        rnn.zero_grad(set_to_none=True)
        with precision_context(precision, x.device.type):
            out, h_n = rnn(x)
        (out.float().sum() + final_hidden(h_n).float().sum()).backward()

    return step


def compiled_step(rnn: nn.RNNBase, x: Tensor, kernels: Kernels,
                  dtype: torch.dtype) -> Callable[[], None]:
    def step() -> None:
        rnn.zero_grad(set_to_none=True)
        out, h_n = compiled_forward(rnn, x, kernels, dtype)
        (out.sum() + h_n.sum()).backward()

    return step


def use_backend(model: nn.Module, backend: str = "stock", precision: str = "fp32",
                train_steps: int | None = None, log: Callable[[str], None] | None = None,
                tune_cache: TuneCache | None = None) -> list[RecurrentRunner]:
    """Attach a runner for ``backend`` and ``precision`` to every recurrent layer of ``model``.

    ``train_steps`` (optimizer steps the run will take) lets ``auto`` weigh compile time;
    ``tune_cache`` is where ``auto`` keeps its measurements (default: the user cache).
    ``stock`` in ``fp32`` removes any runner: the plain ``nn.*`` call. bf16 on a CPU
    without bf16 matmul hardware warns (:class:`PerformanceWarning`): it trains, slower.
    """
    check_choice("backend", backend, BACKENDS)
    check_choice("precision", precision, PRECISIONS)
    if precision == "bf16" and _on_cpu(model):
        slow = slow_bf16_reason(CPUINFO)
        if slow is not None:
            warnings.warn(slow, PerformanceWarning, stacklevel=2)
    runners = []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            if backend == "stock" and precision in ("fp32", "auto"):  # auto: fp32 on stock
                module.__dict__.pop("rnnlab_runner", None)
                continue
            runner = RecurrentRunner(backend, precision, train_steps, log, tune_cache)
            # a plain attribute: not a submodule, not in the state dict
            module.__dict__["rnnlab_runner"] = runner
            runners.append(runner)
    return runners


def runner_of(rnn: nn.Module) -> RecurrentRunner | None:
    return rnn.__dict__.get("rnnlab_runner")


def backend_record(model: nn.Module, requested: str) -> dict:
    """Which path trained ``model``'s recurrent layer and why, for the run record (the
    first layer's; rnnlab's models have one): ``{"requested", "path", "why",
    "ms_per_step", ...}``."""
    for module in model.modules():
        runner = runner_of(module)
        if runner is not None and runner.choice is not None:
            return runner.choice.record(requested)
        if runner is not None:
            return Choice("stock", "no full-length training batch",
                          detail="packed batches run stock",
                          precision=runner.run_precision).record(requested)
    if requested == "stock":
        return Choice("stock", "forced").record(requested)
    layer = next((m for m in model.modules() if cell_of(m) is not None), None)
    detail = supports(layer) if layer is not None else "no recurrent layer"
    return Choice("stock", "not supported", detail=detail or "").record(requested)


def _on_cpu(model: nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is None or param.device.type == "cpu"


def cpu_flags(path: str = CPUINFO) -> set[str] | None:
    """The CPU's feature flags from ``path`` (Linux's /proc/cpuinfo; the first CPU's line
    stands for all); None where the file is missing or lists none (not Linux, not x86)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags") and ":" in line:
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def bf16_hardware(path: str = CPUINFO) -> bool | None:
    """Whether the CPU's flags (``path``) show bf16 matmul hardware (:data:`BF16_FLAGS`);
    None where the flags are unknown."""
    flags = cpu_flags(path)
    return None if flags is None else bool(flags.intersection(BF16_FLAGS))


def slow_bf16_reason(path: str = CPUINFO) -> str | None:
    """Why bf16 will likely train slower than fp32 on this CPU, in one line; None where it
    has bf16 matmul hardware or its flags are unknown. Without that hardware oneDNN
    emulates bf16 matmuls, conversions included, and fp32 is the faster choice."""
    if bf16_hardware(path) is not False:
        return None
    return (f"this CPU lacks bfloat16 matmul hardware (no {' or '.join(BF16_FLAGS)} in its "
            "flags): bf16 matmuls will likely be slower than fp32; choose precision fp32")


def matmul_gflops(dtype: torch.dtype, size: int = 1024, seconds: float = 1.0) -> float:
    """The machine's matmul rate (GFLOP/s) for square ``size`` matrices at the current threads."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


