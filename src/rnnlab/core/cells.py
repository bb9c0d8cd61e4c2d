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
from rnnlab.core.errors import UnknownNameError

CELL_TAG = "rnnlab_cell"  # the attribute :meth:`Cell.make` leaves on a layer: its cell's name


@dataclass(frozen=True)
class Cell:
    name: str  # what users type: "lstm"
    module: type[nn.RNNBase]  # the stock implementation
    gates: tuple[str, ...]  # blocks of hidden_size rows in weight_ih / weight_hh, in order
    equations: str  # the update of one step, for documentation and the explorer
    has_cell_state: bool = False  # a second state beside h (the LSTM's c)
    module_options: dict = field(default_factory=dict)  # extra keyword arguments of ``module``
    mode: str | None = None  # ``nn.RNNBase.mode`` of the module made: "LSTM", "RNN_TANH"
    kernels: CellKernels | None = None  # the compiled backend's; None: it runs stock

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    def make(self, **kwargs) -> nn.RNNBase:
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

CELLS: dict[str, Cell] = {}


def register_cell(cell: Cell) -> Cell:
    """Add ``cell`` to the registry (a new name, or a replacement of the same name)."""
    CELLS[cell.name] = cell
    return cell


for _cell in (RNN, LSTM, GRU):
    register_cell(_cell)


def cell_names() -> tuple[str, ...]:
    return tuple(CELLS)


def get_cell(name: str) -> Cell:
    if name not in CELLS:
        raise UnknownNameError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}")
    return CELLS[name]


def cell_of(rnn: nn.Module) -> Cell | None:
    """The declaration of a recurrent layer: the cell that made it (:meth:`Cell.make`),
    else, for a bare ``nn.*`` module, the first registered cell of its ``mode``; None
    when there is none (or the cell that made it is no longer registered)."""
    name = rnn.__dict__.get(CELL_TAG)
    if name is not None:
        return CELLS.get(name)
    return next((cell for cell in CELLS.values() if cell.mode == rnn.mode), None)
