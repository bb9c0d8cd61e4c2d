"""The recurrent cells, each declared once: its ``nn.*`` module, its gates in the order
of the weight rows, its update equations, and the compiled backend's kernels for it.

Models build their recurrent layer from this declaration, the compiled backend
sizes and runs its step loop from it (a cell without kernels trains on the stock
module), and anything that reads gates out (figures, the explorer) names them from
it. A new cell is one :class:`Cell` and one :func:`register_cell` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from rnnlab.core import cell_kernels as k
from rnnlab.core.cell_kernels import CellKernels
from rnnlab.core.cell_layers import LEM, CoRNN, IndRNN, MinGRU, MinLSTM
from rnnlab.core.errors import UnknownNameError

CELL_TAG = "rnnlab_cell"  # the attribute :meth:`Cell.make` leaves on a layer: its cell's name


@dataclass(frozen=True)
class Cell:
    name: str  # what users type: "lstm"
    module: type[nn.Module]  # the stock implementation: an ``nn.RNNBase`` or a cell_layers one
    gates: tuple[str, ...]  # blocks of hidden_size rows in weight_ih / weight_hh, in order
    equations: str  # the update of one step, for documentation and the explorer
    has_cell_state: bool = False  # a second state beside h (the LSTM's c)
    module_options: dict = field(default_factory=dict)  # extra keyword arguments of ``module``
    mode: str | None = None  # ``nn.RNNBase.mode`` of the module made: "LSTM", "RNN_TANH"
    kernels: CellKernels | None = None  # the compiled backend's; None: it runs stock

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    def make(self, **kwargs) -> nn.Module:
        """The stock recurrent layer (batch first) with ``kwargs`` (sizes, layers, ...),
        tagged with this cell's name so that backends find the declaration again."""
        rnn = self.module(**kwargs, **self.module_options, batch_first=True)
        rnn.__dict__[CELL_TAG] = self.name  # a plain attribute: not in the state dict
        return rnn


RNN = Cell("rnn", nn.RNN, ("candidate",), "h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)",
           module_options={"nonlinearity": "tanh"}, mode="RNN_TANH",
           kernels=CellKernels(k.rnn_tanh_step, k.rnn_tanh_step_back))
LSTM = Cell(
    "lstm", nn.LSTM, ("input", "forget", "cell", "output"),
    "i, f, o = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*) for the input, forget, output "
    "gates\n"
    "g = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)\n"
    "c_t = f * c_{t-1} + i * g\n"
    "h_t = o * tanh(c_t)",
    has_cell_state=True, mode="LSTM",
    kernels=CellKernels(k.lstm_step, k.lstm_step_back, saved=4))  # i, f, g, o
GRU = Cell(
    "gru", nn.GRU, ("reset", "update", "new"),
    "r, z = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*) for the reset and update gates\n"
    "n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))\n"
    "h_t = (1 - z) * n + z * h_{t-1}",
    mode="GRU",
    kernels=CellKernels(k.gru_step, k.gru_step_back, saved=4, split=True))  # r, z, n, W_hn h + b_hn

# cells beyond nn.*: the modules in core/cell_layers, whose docstrings give the papers,
# initialisations and defaults; no compiled kernels, so every backend runs them as they are
INDRNN = Cell("indrnn", IndRNN, ("preactivation",),
              "h_t = relu(W x_t + b + u * h_{t-1}), u a vector, |u| <= recurrent_max")
CORNN = Cell(
    "cornn", CoRNN, ("candidate",),
    "candidate = tanh(W_z z_{t-1} + W_y y_{t-1} + V x_t + b)\n"
    "z_t = z_{t-1} + dt * (candidate - gamma * y_{t-1} - epsilon * z_{t-1})\n"
    "y_t = y_{t-1} + dt * z_t  (the output; z is the second state)",
    has_cell_state=True)
LEM_CELL = Cell(
    "lem", LEM, ("dt", "dt_bar", "z_candidate", "y_candidate"),
    "dt_t, dt_bar_t = dt * sigmoid(W_1,2 y_{t-1} + V_1,2 x_t + b_1,2)\n"
    "z_t = (1 - dt_t) * z_{t-1} + dt_t * tanh(W_z y_{t-1} + V_z x_t + b_z)\n"
    "y_t = (1 - dt_bar_t) * y_{t-1} + dt_bar_t * tanh(W_y z_t + V_y x_t + b_y)  (the output)",
    has_cell_state=True)
MINGRU = Cell(
    "mingru", MinGRU, ("update", "candidate"),
    "update = sigmoid(W_z x_t + b_z); candidate = g(W_h x_t + b_h), g(v) = v + 0.5 if v >= 0 "
    "else sigmoid(v)\n"
    "h_t = (1 - update) * h_{t-1} + update * candidate")
MINLSTM = Cell(
    "minlstm", MinLSTM, ("forget", "input", "candidate"),
    "f, i = sigmoid(W_f x_t + b_f), sigmoid(W_i x_t + b_i); forget, input = f, i / (f + i)\n"
    "candidate = g(W_h x_t + b_h), g(v) = v + 0.5 if v >= 0 else sigmoid(v)\n"
    "h_t = forget * h_{t-1} + input * candidate")

CELLS: dict[str, Cell] = {}


def register_cell(cell: Cell) -> Cell:
    """Add ``cell`` to the registry (a new name, or a replacement of the same name)."""
    CELLS[cell.name] = cell
    return cell


for _cell in (RNN, LSTM, GRU, INDRNN, CORNN, LEM_CELL, MINGRU, MINLSTM):
    register_cell(_cell)


def cell_names() -> tuple[str, ...]:
    return tuple(CELLS)


def get_cell(name: str) -> Cell:
    if name not in CELLS:
        raise UnknownNameError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}")
    return CELLS[name]


def cell_of(rnn: nn.Module) -> Cell | None:
    """The declaration of a recurrent layer: the cell that made it (:meth:`Cell.make`),
    else, for a bare ``nn.*`` module, the first registered cell of its ``mode`` (for a
    bare module without one, a cell_layers module, the first of its class); None when
    there is none (or the cell that made it is no longer registered)."""
    name = rnn.__dict__.get(CELL_TAG)
    if name is not None:
        return CELLS.get(name)
    mode = getattr(rnn, "mode", None)
    if mode is None:
        return next((cell for cell in CELLS.values() if cell.module is type(rnn)), None)
    return next((cell for cell in CELLS.values() if cell.mode == mode), None)
