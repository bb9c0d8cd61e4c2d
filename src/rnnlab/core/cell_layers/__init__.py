"""Recurrent cells beyond ``nn.RNN/LSTM/GRU``, one module each, with ``nn.LSTM``'s
interface by :class:`~rnnlab.core.cell_layers.stack.CellStack`: IndRNN, coRNN, LEM,
minGRU and minLSTM. :mod:`rnnlab.core.cells` registers them."""

from rnnlab.core.cell_layers.cornn import CoRNN
from rnnlab.core.cell_layers.indrnn import IndRNN
from rnnlab.core.cell_layers.lem import LEM
from rnnlab.core.cell_layers.mingru import MinGRU
from rnnlab.core.cell_layers.minlstm import MinLSTM
from rnnlab.core.cell_layers.stack import CellStack, RecurrentCell

__all__ = ["LEM", "CellStack", "CoRNN", "IndRNN", "MinGRU", "MinLSTM", "RecurrentCell"]
