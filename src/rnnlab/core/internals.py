"""What a recurrent layer computes at each step of one input: its hidden state, its
cell state (where the cell has one) and every gate, named as the cell's declaration
(:mod:`rnnlab.core.cells`) names them.

For the stock cells (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) the steps are recomputed
here from the layer's own weights: the pre-activations of each step are split into
the declared gates in weight-row order, so a gate's name always comes from the same
declaration that built the model. The arithmetic of a step is the module's own
(PyTorch's documented equations); ``tests/test_internals.py`` checks the hidden and
cell states against the module's outputs. Any other cell module supplies
``trace(x) -> list[dict[str, Tensor]]`` itself: one dict per (layer, direction),
layer-major, with ``"hidden"``, optionally ``"cell"``, and one entry per gate, each
(T, H) or (1, T, H).

Everything here is for inspection (the explorer, figures): inference only, no
dropout, batch of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnlab.core.cells import CELL_TAG, CELLS, Cell, cell_of
from rnnlab.core.errors import UnknownNameError

DIRECTION_NAMES = ("forward", "backward")


@dataclass(frozen=True)
class StepTrace:
    """One (layer, direction) of a recurrent layer over one input of T steps."""

    layer: int
    direction: int  # 0: forward (reads steps 0..T-1), 1: backward (reads T-1..0)
    # (T, H) from trace_recurrent, (B, T, H) from trace_batch
    hidden: Tensor  # the hidden state once step t is read, in input order
    cell: Tensor | None  # the cell state (LSTM), else None
    gates: dict[str, Tensor]  # declared gate name -> its activation at step t

    @property
    def direction_name(self) -> str:
        return DIRECTION_NAMES[self.direction]


# -- one step of each stock cell ------------------------------------------------------
# A step maps (input part, recurrent part, h_{t-1}, c_{t-1}) to (h_t, c_t, gates), the
# gates' activations in weight-row order (the order of the cell's declared gate names).
Step = Callable[[Tensor, Tensor, Tensor, Tensor | None],
                tuple[Tensor, Tensor | None, list[Tensor]]]


def lstm_step(pre_x: Tensor, pre_h: Tensor, h: Tensor, c: Tensor | None):
    i, f, g, o = (pre_x + pre_h).chunk(4, dim=-1)  # each (H,)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    return o * c.tanh(), c, [i, f, g, o]


def gru_step(pre_x: Tensor, pre_h: Tensor, h: Tensor, c: Tensor | None):
    x_r, x_z, x_n = pre_x.chunk(3, dim=-1)
    h_r, h_z, h_n = pre_h.chunk(3, dim=-1)  # h_n includes b_hn: the reset gate scales both
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return (1 - z) * n + z * h, None, [r, z, n]


def rnn_tanh_step(pre_x: Tensor, pre_h: Tensor, h: Tensor, c: Tensor | None):
    h = (pre_x + pre_h).tanh()
    return h, None, [h]


def rnn_relu_step(pre_x: Tensor, pre_h: Tensor, h: Tensor, c: Tensor | None):
    h = (pre_x + pre_h).relu()
    return h, None, [h]


STEPS: dict[str, Step] = {"LSTM": lstm_step, "GRU": gru_step, "RNN_TANH": rnn_tanh_step,
                          "RNN_RELU": rnn_relu_step}


# -- the declaration of a layer ---------------------------------------------------------
def declared_cell(rnn: nn.Module) -> Cell | None:
    """The cell declaration of ``rnn`` (the one that made it, or the stock one of its
    mode); None for a module no registered cell describes."""
    if CELL_TAG in rnn.__dict__:
        return CELLS.get(rnn.__dict__[CELL_TAG])
    return cell_of(rnn) if isinstance(rnn, nn.RNNBase) else None


def gate_names(rnn: nn.Module) -> tuple[str, ...]:
    cell = declared_cell(rnn)
    return cell.gates if cell is not None else ()


def directions_of(rnn: nn.Module) -> int:
    return 2 if getattr(rnn, "bidirectional", False) else 1


# -- tracing ------------------------------------------------------------------------------
@torch.no_grad()
def trace_recurrent(rnn: nn.Module, x: Tensor) -> list[StepTrace]:
    """Per-step internals of ``rnn`` reading ``x`` (1, T, F): one :class:`StepTrace` per
    (layer, direction), layer-major (layer 0 forward, layer 0 backward, layer 1 ...)."""
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"expected one input (1, T, F), got shape {tuple(x.shape)}")
    if callable(getattr(rnn, "trace", None)):
        return traced_by_module(rnn, x)
    return [StepTrace(t.layer, t.direction, t.hidden[0], None if t.cell is None else t.cell[0],
                      {name: g[0] for name, g in t.gates.items()})
            for t in trace_batch(rnn, x)]


@torch.no_grad()
def trace_batch(rnn: nn.Module, x: Tensor) -> list[StepTrace]:
    """:func:`trace_recurrent` for a batch ``x`` (B, T, F) of equal lengths: every tensor
    of the traces is (B, T, H). A cell module with its own ``trace`` is traced one
    input at a time."""
    if callable(getattr(rnn, "trace", None)):
        each = [traced_by_module(rnn, x[b : b + 1]) for b in range(x.shape[0])]
        return [StepTrace(t.layer, t.direction, torch.stack([e[i].hidden for e in each]),
                          None if t.cell is None else torch.stack([e[i].cell for e in each]),
                          {n: torch.stack([e[i].gates[n] for e in each]) for n in t.gates})
                for i, t in enumerate(each[0])]
    cell = declared_cell(rnn)
    mode = getattr(rnn, "mode", None)
    if cell is None or mode not in STEPS or getattr(rnn, "proj_size", 0):
        raise UnknownNameError(f"no per-step internals for a {type(rnn).__name__} layer "
                               f"(mode {mode}); a cell module of its own needs a trace(x) method")
    traces: list[StepTrace] = []
    layer_input = x.float()  # (B, T, F)
    for layer in range(rnn.num_layers):
        found = [trace_direction(rnn, cell, STEPS[mode], layer, d, layer_input)
                 for d in range(directions_of(rnn))]
        traces += found
        layer_input = torch.cat([t.hidden for t in found], dim=-1)  # (B, T, D*H) the next input
    return traces


def layer_weights(rnn: nn.RNNBase, layer: int, direction: int) -> tuple[Tensor, ...]:
    """(W_ih (G*H, F), W_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)) of one layer and direction;
    zero biases for a layer made without them."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    w_ih, w_hh = getattr(rnn, f"weight_ih_{suffix}"), getattr(rnn, f"weight_hh_{suffix}")
    zeros = w_hh.new_zeros(w_hh.shape[0])
    b_ih = getattr(rnn, f"bias_ih_{suffix}", None)
    b_hh = getattr(rnn, f"bias_hh_{suffix}", None)
    return (w_ih.float(), w_hh.float(), zeros if b_ih is None else b_ih.float(),
            zeros if b_hh is None else b_hh.float())


def trace_direction(rnn: nn.RNNBase, cell: Cell, step: Step, layer: int, direction: int,
                    layer_input: Tensor) -> StepTrace:
    """Run one direction of one layer step by step over ``layer_input`` (B, T, F)."""
    w_ih, w_hh, b_ih, b_hh = layer_weights(rnn, layer, direction)
    batch, steps, size = layer_input.shape[0], layer_input.shape[1], w_hh.shape[1]
    pre_x = layer_input @ w_ih.T + b_ih  # (B, T, G*H) the input part of every step at once
    h = layer_input.new_zeros(batch, size)  # (B, H) zero initial state, as the models use
    c = layer_input.new_zeros(batch, size) if cell.has_cell_state else None
    hidden, cells = [None] * steps, [None] * steps
    gates: list[list[Tensor]] = [[None] * steps for _ in cell.gates]
    order = range(steps) if direction == 0 else range(steps - 1, -1, -1)
    for t in order:
        h, c, activations = step(pre_x[:, t], h @ w_hh.T + b_hh, h, c)
        if len(activations) != cell.num_gates:
            raise UnknownNameError(f"the {cell.name} cell declares {cell.num_gates} gates "
                                   f"but its {rnn.mode} step computes {len(activations)}")
        hidden[t], cells[t] = h, c
        for found, a in zip(gates, activations, strict=True):
            found[t] = a
    return StepTrace(layer, direction, torch.stack(hidden, dim=1),
                     torch.stack(cells, dim=1) if c is not None else None,
                     {name: torch.stack(found, dim=1)
                      for name, found in zip(cell.gates, gates, strict=True)})


def as_steps(value: Tensor, steps: int) -> Tensor:
    """A traced tensor as (T, H): a leading batch of one is dropped."""
    value = value.detach().float()
    if value.dim() == 3 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 2 or value.shape[0] != steps:
        raise ValueError(f"a trace entry must be (T={steps}, H), got {tuple(value.shape)}")
    return value


def traced_by_module(rnn: nn.Module, x: Tensor) -> list[StepTrace]:
    """The internals a cell module reports itself (``rnn.trace(x)``), gates in the order
    of its declaration (any others after them)."""
    steps, directions = x.shape[1], directions_of(rnn)
    declared = gate_names(rnn)
    traces = []
    for index, entry in enumerate(rnn.trace(x)):
        if "hidden" not in entry:
            raise ValueError(f"{type(rnn).__name__}.trace left out the hidden state")
        names = [n for n in declared if n in entry]
        names += [n for n in entry if n not in ("hidden", "cell") and n not in names]
        cell = entry.get("cell")
        traces.append(StepTrace(index // directions, index % directions,
                                as_steps(entry["hidden"], steps),
                                as_steps(cell, steps) if cell is not None else None,
                                {n: as_steps(entry[n], steps) for n in names}))
    return traces
