"""Training backends for the recurrent layer: PyTorch's own ``nn.RNN/LSTM/GRU``
(``stock``) or a hand-written step loop whose pointwise work is fused by
``torch.compile`` (``compiled``), each in float32 or bfloat16 (``--precision``).

The compiled path keeps the ``nn.*`` module and its parameters (``weight_ih_l0``,
``weight_hh_l0_reverse``, ...), so state dicts and checkpoints do not depend on the
backend; it only replaces how a forward and backward pass are computed:

- the input projection of every time step, for both directions, is one matmul,
  ``(T*B, F) @ (F, D*G*H)``;
- each step is one small matmul ``h @ W_hh^T`` and one compiled kernel that does
  all the gate arithmetic and writes ``h``, ``c`` and the activations that the
  backward pass needs straight into preallocated (T, B, ...) buffers;
- the backward pass is hand-written (:class:`_RecurrentLayer`): per step one
  kernel and one ``dgates @ W_hh``; the weight gradients of all steps are then
  two big matmuls, ``dgates^T @ x`` and ``dgates^T @ h_prev``, instead of T small
  ones.

What it does not cover, and hands to the stock module instead: variable-length
batches (``lengths`` given: packed sequences), an initial state other than zeros,
LSTM projections. bfloat16 (``precision="bf16"``) runs the matmuls in bfloat16 and
keeps the gate arithmetic, the cell state and the master weights in float32; for
the stock module it is ``torch.autocast("cpu", dtype=torch.bfloat16)``.

:func:`use_backend` attaches a :class:`RecurrentRunner` to every recurrent layer
of a model; :func:`rnnlab.models.run_recurrent` calls it when present.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

BACKENDS = ("auto", "stock", "compiled")
PRECISIONS = ("fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# ``auto`` compiles only when the job is big enough for the speed-up to repay the
# compile time (docs/benchmarks.md: the measurements behind these numbers).
AUTO_MIN_HIDDEN = 32  # below this the per-step Python overhead beats the fused kernels
AUTO_MIN_BATCH = 64
AUTO_MIN_TRAIN_GFLOP = 1_000.0  # total training work (3x forward matmul FLOPs) of the run


# -- fused per-step kernels -----------------------------------------------------------
# Every step kernel reads the step's input projection ``xw`` (B, G*H) and recurrent
# projection ``hw`` (B, G*H), both without bias, and writes its results into the
# ``*_out`` views of preallocated buffers (compiled, the writes land in place).
# Every backward kernel gets ``dh`` (B, H), the full gradient of this step's h, and
# writes the gradients of the gate pre-activations: ``dxw_out`` (for W_ih, b_ih and
# the input) and, for the GRU only, ``dhw_out`` (for W_hh, b_hh and h_prev), which
# differ in the GRU's new-gate column. ``carry`` (B, H) is a gradient carried to the
# previous step outside the matmul: the LSTM's dc, the GRU's direct dh_prev.

def lstm_step(xw, hw, b_ih, b_hh, h_prev, c_prev, h_out, c_out, acts_out):
    gates = xw.float() + hw.float() + b_ih + b_hh  # (B, 4H): input, forget, cell, output
    i, f, g, o = gates.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c_prev + i * g
    c_out.copy_(c)
    h_out.copy_(o * c.tanh())
    acts_out.copy_(torch.cat([i, f, g, o], 1))


def lstm_step_back(dh, acts, h_prev, c_prev, c, carry, dxw_out, dhw_out):
    i, f, g, o = acts.chunk(4, 1)
    tanh_c = c.tanh()
    dc = carry + dh * o * (1 - tanh_c * tanh_c)
    dxw_out.copy_(torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                             dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], 1))
    carry.copy_(dc * f)


def gru_step(xw, hw, b_ih, b_hh, h_prev, c_prev, h_out, c_out, acts_out):
    x_r, x_z, x_n = (xw.float() + b_ih).chunk(3, 1)  # (B, H) each: reset, update, new
    h_r, h_z, h_n = (hw.float() + b_hh).chunk(3, 1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    h_out.copy_((1 - z) * n + z * h_prev)
    acts_out.copy_(torch.cat([r, z, n, h_n], 1))


def gru_step_back(dh, acts, h_prev, c_prev, c, carry, dxw_out, dhw_out):
    r, z, n, h_n = acts.chunk(4, 1)
    dh = dh + carry  # the next step's direct path, z * h_prev
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * h_n * r * (1 - r)
    dxw_out.copy_(torch.cat([dr, dz, dn], 1))
    dhw_out.copy_(torch.cat([dr, dz, dn * r], 1))
    carry.copy_(dh * z)


def rnn_tanh_step(xw, hw, b_ih, b_hh, h_prev, c_prev, h_out, c_out, acts_out):
    h_out.copy_((xw.float() + hw.float() + b_ih + b_hh).tanh())


def rnn_tanh_step_back(dh, acts, h, c_prev, c, carry, dxw_out, dhw_out):
    dxw_out.copy_(dh * (1 - h * h))


def rnn_relu_step(xw, hw, b_ih, b_hh, h_prev, c_prev, h_out, c_out, acts_out):
    h_out.copy_((xw.float() + hw.float() + b_ih + b_hh).relu())


def rnn_relu_step_back(dh, acts, h, c_prev, c, carry, dxw_out, dhw_out):
    dxw_out.copy_(dh * (h > 0))


@dataclass(frozen=True)
class CellKind:
    gates: int  # G: gate blocks of H rows in weight_ih / weight_hh
    saved: int  # activations saved per step, in units of H (0: h itself suffices)
    has_c: bool  # an LSTM cell state
    split_hw: bool  # the gradient of hw differs from that of xw (GRU)
    step: Callable
    step_back: Callable
    back_reads_h: bool = False  # step_back wants h_t (not h_prev) in its h slot


CELL_KINDS: dict[str, CellKind] = {
    "LSTM": CellKind(4, 4, True, False, lstm_step, lstm_step_back),
    "GRU": CellKind(3, 4, False, True, gru_step, gru_step_back),
    "RNN_TANH": CellKind(1, 0, False, False, rnn_tanh_step, rnn_tanh_step_back, back_reads_h=True),
    "RNN_RELU": CellKind(1, 0, False, False, rnn_relu_step, rnn_relu_step_back, back_reads_h=True),
}


class Kernels:
    """The step kernels of one cell kind, compiled once per process (or left eager)."""

    def __init__(self, kind: CellKind, compiled: bool):
        wrap = (lambda f: torch.compile(f, dynamic=True, fullgraph=True)) if compiled else (lambda f: f)
        self.step, self.step_back = wrap(kind.step), wrap(kind.step_back)


# -- one layer, both directions, forward and backward ----------------------------------
def _direction_steps(d: int, T: int) -> range:
    return range(T) if d == 0 else range(T - 1, -1, -1)


class _RecurrentLayer(torch.autograd.Function):
    """One layer (one or two directions) over time-major ``x`` (T, B, F) from zero state.

    Returns ``out`` (T, B, D*H), float32; the forward direction in ``[..., :H]``.
    """

    @staticmethod
    def forward(ctx, kind: CellKind, kernels: Kernels, dtype: torch.dtype, x: Tensor, *weights: Tensor):
        D = len(weights) // 4
        w_ih = [weights[4 * d] for d in range(D)]  # (G*H, F) each
        w_hh = [weights[4 * d + 1] for d in range(D)]  # (G*H, H)
        b_ih = [weights[4 * d + 2] for d in range(D)]  # (G*H,)
        b_hh = [weights[4 * d + 3] for d in range(D)]
        T, B, F = x.shape
        H = w_hh[0].shape[1]
        GH = kind.gates * H
        w_ih_all = torch.cat(w_ih).to(dtype)  # (D*G*H, F)
        w_hh_t = [w.to(dtype).t() for w in w_hh]  # (H, G*H)
        x_lp = x.to(dtype)
        xw = torch.mm(x_lp.reshape(T * B, F), w_ih_all.t()).view(T, B, D * GH)  # all steps, all directions
        out = x.new_empty(T, B, D * H, dtype=torch.float32)
        c = x.new_empty(T, B, D * H, dtype=torch.float32) if kind.has_c else None
        acts = x.new_empty(T, B, D * kind.saved * H, dtype=torch.float32) if kind.saved else None
        zero = x.new_zeros(B, D * H, dtype=torch.float32)  # the initial h and c, strided like out[t]
        for d in range(D):
            hs, gs, ss = slice(d * H, (d + 1) * H), slice(d * GH, (d + 1) * GH), slice(d * kind.saved * H, (d + 1) * kind.saved * H)
            h_prev, c_prev = zero[:, hs], zero[:, hs]
            for t in _direction_steps(d, T):
                hw = torch.mm(h_prev.to(dtype), w_hh_t[d])  # (B, G*H)
                kernels.step(xw[t, :, gs], hw, b_ih[d], b_hh[d], h_prev, c_prev, out[t, :, hs],
                             c[t, :, hs] if c is not None else None,
                             acts[t, :, ss] if acts is not None else None)
                h_prev = out[t, :, hs]
                c_prev = c[t, :, hs] if c is not None else None
        ctx.kind, ctx.kernels, ctx.dtype, ctx.sizes = kind, kernels, dtype, (D, T, B, F, H)
        ctx.save_for_backward(x_lp, out, c, acts, w_ih_all, *w_hh)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        kind, kernels, dtype = ctx.kind, ctx.kernels, ctx.dtype
        D, T, B, F, H = ctx.sizes
        x_lp, out, c, acts, w_ih_all, *w_hh = ctx.saved_tensors
        GH = kind.gates * H
        w_hh_lp = [w.to(dtype) for w in w_hh]  # (G*H, H)
        dout = dout.float().contiguous()
        dxw = out.new_empty(T, B, D * GH)
        dhw = out.new_empty(T, B, D * GH) if kind.split_hw else dxw
        zero = out.new_zeros(B, D * H)
        for d in range(D):
            hs, gs, ss = slice(d * H, (d + 1) * H), slice(d * GH, (d + 1) * GH), slice(d * kind.saved * H, (d + 1) * kind.saved * H)
            steps = list(_direction_steps(d, T))
            carry = out.new_zeros(B, H)
            for k in range(len(steps) - 1, -1, -1):
                t = steps[k]
                prev = steps[k - 1] if k > 0 else None
                if k == len(steps) - 1:
                    dh = dout[t, :, hs]
                else:  # the gradient through h_t's use in the next step, plus its own output's
                    later = steps[k + 1]
                    if dtype == torch.float32:
                        dh = torch.addmm(dout[t, :, hs], dhw[later, :, gs], w_hh_lp[d])
                    else:
                        dh = dout[t, :, hs] + torch.mm(dhw[later, :, gs].to(dtype), w_hh_lp[d])
                h_prev = out[prev, :, hs] if prev is not None else zero[:, hs]
                c_prev = (c[prev, :, hs] if prev is not None else zero[:, hs]) if c is not None else None
                kernels.step_back(dh, acts[t, :, ss] if acts is not None else None,
                                  out[t, :, hs] if kind.back_reads_h else h_prev, c_prev,
                                  c[t, :, hs] if c is not None else None, carry,
                                  dxw[t, :, gs], dhw[t, :, gs] if kind.split_hw else None)
        grads: list[Tensor | None] = []
        dxw_lp = dxw.to(dtype).view(T * B, D * GH)
        dhw_lp = dhw.to(dtype) if kind.split_hw else dxw_lp.view(T, B, D * GH)
        d_w_ih_all = torch.mm(dxw_lp.t(), x_lp.reshape(T * B, F)).float()  # (D*G*H, F)
        d_b_ih_all = dxw.sum((0, 1))
        d_b_hh_all = dhw.sum((0, 1)) if kind.split_hw else d_b_ih_all
        for d in range(D):
            hs, gs = slice(d * H, (d + 1) * H), slice(d * GH, (d + 1) * GH)
            # step t's recurrent input is h of the step before it: t-1 forward, t+1 backward
            dhw_d = dhw_lp[1:, :, gs] if d == 0 else dhw_lp[:-1, :, gs]
            h_prev = out[:-1, :, hs] if d == 0 else out[1:, :, hs]
            d_w_hh = torch.mm(dhw_d.reshape(-1, GH).t(), h_prev.to(dtype).reshape(-1, H)).float()
            grads += [d_w_ih_all[gs], d_w_hh, d_b_ih_all[gs], d_b_hh_all[gs]]
        dx = None
        if ctx.needs_input_grad[3]:
            dx = torch.mm(dxw_lp, w_ih_all).view(T, B, F).float()
        return (None, None, None, dx, *grads)


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
    if rnn.mode not in CELL_KINDS:
        return f"cell mode {rnn.mode}"
    if not rnn.bias:
        return "bias=False"
    if getattr(rnn, "proj_size", 0):
        return "LSTM projections"
    if not rnn.batch_first:
        return "batch_first=False"
    return None


def compiled_forward(rnn: nn.RNNBase, x: Tensor, kernels: Kernels, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``rnn(x)`` from zero state by the hand-written loop: ``(out (B, T, D*H), h_n (L*D, B, H))``."""
    kind = CELL_KINDS[rnn.mode]
    D, H = (2 if rnn.bidirectional else 1), rnn.hidden_size
    layer_in = x.transpose(0, 1).contiguous()  # (T, B, F) time-major
    finals = []
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout and rnn.training:
            layer_in = nn.functional.dropout(layer_in, rnn.dropout, training=True)
        out = _RecurrentLayer.apply(kind, kernels, dtype, layer_in, *layer_weights(rnn, layer))  # (T, B, D*H)
        finals.append(out[-1, :, :H])  # forward direction ends at the last step
        if D == 2:
            finals.append(out[0, :, H:])  # backward direction ends at the first
        layer_in = out
    return layer_in.transpose(0, 1), torch.stack(finals)  # (B, T, D*H), (L*D, B, H)


def train_gflop(cell: str, batch: int, steps: int, features: int, hidden: int, layers: int = 1,
                directions: int = 1) -> float:
    """Matmul GFLOP of one training step: 3x the forward's 2*B*T*G*H*(F+H) per layer and direction."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    forward = 0.0
    for layer in range(layers):
        f_in = features if layer == 0 else directions * hidden
        forward += directions * 2.0 * batch * steps * gates * hidden * (f_in + hidden)
    return 3 * forward / 1e9


_KERNELS: dict[str, Kernels | None] = {}  # compiled kernels per cell mode, once per process


def warn(message: str) -> None:
    sys.stderr.write(f"rnnlab: warning: {message}\n")


def compile_kernels(rnn: nn.RNNBase, dtype: torch.dtype, log: Callable[[str], None] | None = None) -> Kernels | None:
    """The compiled kernels for ``rnn``'s cell, compiled (and timed) on first use; None
    when compiling fails (a one-line warning says why; the caller uses stock)."""
    mode = rnn.mode
    if mode in _KERNELS and _KERNELS[mode] is not None:
        kernels = _KERNELS[mode]
    elif mode in _KERNELS:
        return None
    else:
        kernels = Kernels(CELL_KINDS[mode], compiled=True)
    key = (mode, dtype, rnn.bidirectional)
    if key in _WARMED:
        return kernels
    started = time.perf_counter()
    try:  # a tiny forward and backward compiles every kernel this model will call
        probe = type(rnn)(rnn.input_size, rnn.hidden_size, num_layers=1, bidirectional=rnn.bidirectional,
                          batch_first=True, **({"nonlinearity": rnn.nonlinearity} if mode.startswith("RNN") else {}))
        x = torch.randn(5, 3, rnn.input_size, requires_grad=True)
        out, h_n = compiled_forward(probe, x, kernels, dtype)
        (out.sum() + h_n.sum()).backward()
    except Exception as err:  # any compiler failure means: use stock
        _KERNELS[mode] = None
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        warn(f"torch.compile failed for {mode} ({type(err).__name__}: {first}); using the stock backend")
        return None
    _KERNELS[mode] = kernels
    _WARMED.add(key)
    (log or _stderr)(f"rnnlab: compiled the {mode} step kernels in {time.perf_counter() - started:.1f}s")
    return kernels


_WARMED: set = set()


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


class RecurrentRunner:
    """How one recurrent layer runs: backend and precision; called as ``runner(rnn, x, lengths)``.

    ``backend`` is ``stock``, ``compiled`` or ``auto``; ``auto`` decides at the first
    full-length batch (see :func:`auto_compiles`). Batches with ``lengths`` always
    run stock (packed sequences).
    """

    def __init__(self, backend: str = "stock", precision: str = "fp32", train_steps: int | None = None,
                 log: Callable[[str], None] | None = None):
        check_choice("backend", backend, BACKENDS)
        check_choice("precision", precision, PRECISIONS)
        self.backend, self.precision, self.train_steps, self.log = backend, precision, train_steps, log
        self.kernels: Kernels | None = None
        self.resolved: str | None = None if backend == "auto" else backend  # set at the first batch

    def __call__(self, rnn: nn.RNNBase, x: Tensor, lengths: Tensor | None, stock: Callable):
        if lengths is None and self.resolve(rnn, x) == "compiled":
            return compiled_forward(rnn, x, self.kernels, DTYPES[self.precision])
        with self.autocast():
            out, h_n = stock(rnn, x, lengths)
        return out.float(), h_n.float()

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=DTYPES[self.precision])

    def resolve(self, rnn: nn.RNNBase, x: Tensor) -> str:
        if self.resolved is None:
            self.resolved = "compiled" if auto_compiles(rnn, x, self.train_steps) else "stock"
        if self.resolved == "compiled" and self.kernels is None:
            reason = supports(rnn)
            if reason is not None:
                if self.backend == "compiled":
                    warn(f"the compiled backend does not support {reason}; using stock")
                self.resolved = "stock"
                return self.resolved
            self.kernels = compile_kernels(rnn, DTYPES[self.precision], self.log)
            if self.kernels is None:
                self.resolved = "stock"
        return self.resolved

    def describe(self) -> dict:
        return {"backend": self.backend, "resolved": self.resolved, "precision": self.precision}


def auto_compiles(rnn: nn.RNNBase, x: Tensor, train_steps: int | None) -> bool:
    """``auto``'s rule: compile when the layer is wide, the batch large, and the run long
    enough that the faster steps repay the compile time (docs/benchmarks.md)."""
    if supports(rnn) is not None or train_steps is None:
        return False
    B, T, F = x.shape
    cell = {"LSTM": "lstm", "GRU": "gru"}.get(rnn.mode, "rnn")
    work = train_steps * train_gflop(cell, B, T, F, rnn.hidden_size, rnn.num_layers, 2 if rnn.bidirectional else 1)
    return rnn.hidden_size >= AUTO_MIN_HIDDEN and B >= AUTO_MIN_BATCH and work >= AUTO_MIN_TRAIN_GFLOP


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        from rnnlab.errors import UserError

        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def use_backend(model: nn.Module, backend: str = "stock", precision: str = "fp32",
                train_steps: int | None = None, log: Callable[[str], None] | None = None) -> list[RecurrentRunner]:
    """Attach a runner for ``backend`` and ``precision`` to every recurrent layer of ``model``.

    ``train_steps`` (optimizer steps the run will take) lets ``auto`` weigh compile time.
    ``stock`` in ``fp32`` removes any runner: the plain ``nn.*`` call.
    """
    runners = []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            if backend == "stock" and precision == "fp32":
                check_choice("backend", backend, BACKENDS)
                module.__dict__.pop("rnnlab_runner", None)
                continue
            runner = RecurrentRunner(backend, precision, train_steps, log)
            module.__dict__["rnnlab_runner"] = runner  # a plain attribute: not a submodule, not in the state dict
            runners.append(runner)
    return runners


def runner_of(rnn: nn.Module) -> RecurrentRunner | None:
    return rnn.__dict__.get("rnnlab_runner")


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


