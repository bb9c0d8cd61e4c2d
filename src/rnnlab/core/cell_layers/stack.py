"""Recurrent cells that PyTorch does not ship, stacked into ``nn.RNN``'s interface.

A cell (:class:`RecurrentCell`) is one layer in one direction: its input part for all
steps at once (:meth:`~RecurrentCell.project`), one step (:meth:`~RecurrentCell.step`,
which also names its gates), and a scan over time (:meth:`~RecurrentCell.scan`: the step
loop, or a faster one a cell writes for itself). :class:`CellStack` makes layers and
directions of it behave like ``nn.LSTM``: ``out, h_n = layer(x)`` with ``x`` (B, T, F) or
a ``PackedSequence``, ``h_n`` (L*D, B, H), or ``(h_n, c_n)`` for a cell with a second
state; dropout between layers; and :meth:`CellStack.trace`, every gate at every step.

Variable lengths follow ``nn.LSTM``'s packed semantics without masking inside the cells:
every cell here is causal, so the forward direction runs over the padded batch and its
outputs before each sequence's length are exact; ``h_n`` is read at each sequence's last
step; the backward direction reads each sequence reversed within its own length (a
gather), so its padding comes last too. Outputs at padded steps never leave the layer.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.core.errors import check

State = tuple[Tensor, ...]  # one (B, H) tensor per state of the cell: (h,) or (h, c)


class RecurrentCell(nn.Module):
    """One layer, one direction. Subclasses set ``gates`` (the paper's names, for
    :meth:`trace`) and ``num_states`` (2 when the cell keeps a second state beside the
    output h), and write :meth:`project` and :meth:`step`."""

    gates: ClassVar[tuple[str, ...]] = ()
    num_states: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size

    def project(self, x: Tensor) -> Tensor:
        """The input's part of every step at once: x (T, B, F) -> (T, B, *), one matmul."""
        raise NotImplementedError

    def step(self, projected: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        """One step from ``projected`` (B, *) (a step of :meth:`project`) and ``state``:
        the new state, output h first, and each gate by name, each (B, H)."""
        raise NotImplementedError

    def zero_state(self, like: Tensor) -> State:
        """The zero initial state for a batch of ``like`` (T, B, F)."""
        zero = like.new_zeros(like.shape[1], self.hidden_size)
        return (zero,) * self.num_states

    def scan(self, x: Tensor, state: State | None) -> tuple[State, State]:
        """Every step's states from x (T, B, F) and the initial ``state`` (None: zero):
        one (T, B, H) tensor per state, the output h first; and the last step's, (B, H)
        each, as tensors of their own (read from the (T, B, H) ones, each would send
        back a zero-filled (T, B, H) gradient). The step loop; cells with a faster way
        (a parallel scan, a hand-written backward) override it."""
        state = self.zero_state(x) if state is None else state
        steps: list[State] = []
        # unbind, not projected[t]: one autograd node for all steps; T selects would each
        # send back a zero-filled (T, B, *) gradient, O(T^2) work in the backward pass
        for projected in self.project(x).unbind(0):  # (B, *) each
            state, _ = self.step(projected, state)
            steps.append(state)
        return tuple(torch.stack(per_state) for per_state in zip(*steps, strict=True)), state

    def trace(self, x: Tensor, state: State | None = None) -> dict[str, Tensor]:
        """The step loop, keeping everything: "hidden", "cell" (a second state) and each
        gate, each (T, B, H), from x (T, B, F)."""
        state = self.zero_state(x) if state is None else state
        kept: dict[str, list[Tensor]] = {}
        for projected in self.project(x).unbind(0):
            state, gates = self.step(projected, state)
            for name, value in zip(("hidden", "cell"), state, strict=False):
                kept.setdefault(name, []).append(value)
            for name, value in gates.items():
                kept.setdefault(name, []).append(value)
        return {name: torch.stack(values) for name, values in kept.items()}


def reversal_index(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """(T, B) time indices that reverse each sequence within its length and leave its
    padding in place: step t of sequence b reads step lengths[b]-1-t (t < lengths[b])."""
    t = torch.arange(steps, device=device)[:, None]  # (T, 1)
    n = lengths.to(device)[None, :]  # (1, B)
    return torch.where(t < n, n - 1 - t, t)


def reverse_time(seq: Tensor, index: Tensor | None) -> Tensor:
    """seq (T, B, C) with each sequence reversed: within its length by ``index``
    (:func:`reversal_index`), or whole when there is none. Its own inverse."""
    if index is None:
        return seq.flip(0)
    return seq.gather(0, index[:, :, None].expand_as(seq))


def last_steps(states: State, lengths: Tensor) -> State:
    """Each state (T, B, H) at each sequence's last step: (B, H)."""
    last = (lengths - 1).to(states[0].device)
    batch = torch.arange(len(last), device=last.device)
    return tuple(s[last, batch] for s in states)


class CellStack(nn.Module):
    """Layers and directions of one :class:`RecurrentCell` with ``nn.LSTM``'s interface.

    Subclasses set ``cell_type``; ``cell_options`` go to every cell (``dt`` ...). The
    cells are ``cells["l0"]``, ``cells["l0_reverse"]``, ... in ``h_n``'s order.
    """

    cell_type: ClassVar[type[RecurrentCell]]
    mode = None  # no ``nn.RNNBase`` mode: backends find the cell by its tag

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = True,
                 **cell_options):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden", hidden_size),
                            ("layers", num_layers)):
            check(value >= 1, name, f"must be >= 1, got {value}")
        check(0.0 <= dropout < 1.0, "dropout", f"must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.batch_first = bidirectional, dropout, batch_first
        directions = 2 if bidirectional else 1
        self.cells = nn.ModuleDict()
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else directions * hidden_size
            for suffix in ("", "_reverse")[:directions]:
                self.cells[f"l{layer}{suffix}"] = self.cell_type(layer_input, hidden_size,
                                                                 **cell_options)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def num_states(self) -> int:
        return self.cell_type.num_states

    def forward(self, x: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, ...] | None = None):
        """``(out, h_n)`` as ``nn.LSTM`` gives them: out (B, T, D*H) (time first unless
        ``batch_first``) or a PackedSequence like ``x``; h_n (L*D, B, H), or a tuple of
        them, one per state, for a cell with two."""
        if isinstance(x, PackedSequence):
            padded, lengths = pad_packed_sequence(x)  # (T, B, F), the batch in its own order
            out, h_n = self._run(padded, lengths, hx)
            return pack_like(out, lengths, x), h_n
        seq = x.transpose(0, 1) if self.batch_first else x  # (T, B, F) time-major
        out, h_n = self._run(seq, None, hx)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _initial(self, hx: Tensor | tuple[Tensor, ...] | None) -> list[State | None]:
        """The initial state of each (layer, direction); None: zero."""
        if hx is None:
            return [None] * len(self.cells)
        per_state = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        check(len(per_state) == self.num_states, "hx",
              f"must hold {self.num_states} state(s), got {len(per_state)}")
        return [tuple(s[k] for s in per_state) for k in range(len(self.cells))]

    def _run(self, x: Tensor, lengths: Tensor | None, hx) -> tuple[Tensor, Tensor | State]:
        """x (T, B, F) time-major -> out (T, B, D*H), h_n."""
        initial = self._initial(hx)
        index = reversal_index(lengths, x.shape[0], x.device) if lengths is not None else None
        cells = list(self.cells.values())
        finals: list[State] = []
        layer_in = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
            outs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                seq_in = layer_in if d == 0 else reverse_time(layer_in, index)
                states, last = cells[k].scan(seq_in, initial[k])  # (T, B, H), (B, H) each
                finals.append(last if lengths is None else last_steps(states, lengths))
                outs.append(states[0] if d == 0 else reverse_time(states[0], index))
            layer_in = torch.cat(outs, -1) if len(outs) > 1 else outs[0]  # (T, B, D*H)
        h_n = tuple(torch.stack(per_state) for per_state in zip(*finals, strict=True))
        return layer_in, (h_n[0] if self.num_states == 1 else h_n)

    @torch.no_grad()
    def trace(self, x: Tensor) -> list[dict[str, Tensor]]:
        """Every gate at every step, from zero state and without dropout: one dict per
        (layer, direction) in ``h_n``'s order, with "hidden", each of the cell's gates
        by name and "cell" (the second state, when the cell has one), each (B, T, H) in
        the input's time order. x is (B, T, F), whatever ``batch_first`` says."""
        layer_in = x.transpose(0, 1)  # (T, B, F)
        cells = list(self.cells.values())
        traces = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.directions):
                cell = cells[layer * self.directions + d]
                seq_in = layer_in if d == 0 else layer_in.flip(0)
                found = cell.trace(seq_in)  # each (T, B, H)
                if d == 1:
                    found = {name: value.flip(0) for name, value in found.items()}
                outs.append(found["hidden"])
                traces.append({name: value.transpose(0, 1) for name, value in found.items()})
            layer_in = torch.cat(outs, -1)
        return traces


def pack_like(out: Tensor, lengths: Tensor, packed: PackedSequence) -> PackedSequence:
    """out (T, B, C), the batch in its own order, packed the way ``packed`` was."""
    if packed.sorted_indices is not None:
        out = out.index_select(1, packed.sorted_indices.to(out.device))
        lengths = lengths[packed.sorted_indices.cpu()]
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                          packed.unsorted_indices)
