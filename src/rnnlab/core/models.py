"""Recurrent models, top to bottom: the config, the recurrent layer (from the cell
declarations in core.cells), the sequence classifier (one label per sequence) and
the per-step model (one logit per step).

Both read variable-length batches through ``pack_padded_sequence`` when given
``lengths``, so padding never reaches the recurrence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.core.cells import cell_names, get_cell
from rnnlab.core.errors import UnknownNameError, check, check_choice
from rnnlab.core.settings import setting

READOUTS = ("h_n", "last_step")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = setting("lstm", "recurrent cell", choices=cell_names)
    input_size: int = 28  # set by the task
    hidden_size: int = setting(100, "hidden size", name="hidden", metavar="H")
    num_layers: int = setting(1, "stacked recurrent layers", name="layers")
    bidirectional: bool = setting(False, "read each sequence in both directions")
    dropout: float = setting(0.0, "dropout between layers and before the output layer")
    # Jozefowicz et al. 2015: a forget gate open at the start lets the gradient reach far
    # back; at 0 it about halves at every step (sMNIST's LSTM needs 3: pixel_mnist/study.py)
    forget_bias: float = setting(0.0, "the forget gate's bias at initialisation (LSTM); 1 to "
                                 "3 helps long sequences", metavar="B")
    num_outputs: int = 10  # set by the task: classes for a classifier, 1 for a per-step bit model
    # "h_n": final hidden state of each direction. "last_step": the output at the last
    # time step, the reference's flawed readout, kept only to measure the flaw.
    readout: str = "h_n"

    def __post_init__(self) -> None:
        check_choice("cell", self.cell, cell_names())
        for name, value in (("input_size", self.input_size), ("hidden", self.hidden_size),
                            ("layers", self.num_layers), ("num_outputs", self.num_outputs)):
            check(value >= 1, name, f"must be >= 1, got {value}")
        check_choice("readout", self.readout, READOUTS)
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.forget_bias == 0.0 or ("forget" in get_cell(self.cell).gates
              and issubclass(get_cell(self.cell).module, nn.RNNBase)), "forget_bias",
              f"applies to nn.* cells with a forget gate (lstm), not {self.cell}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def to_dict(self) -> dict:
        return asdict(self)


def make_recurrent(cfg: ModelConfig) -> nn.RNNBase:
    cell = get_cell(cfg.cell)
    rnn = cell.make(
        input_size=cfg.input_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
    )
    if cfg.forget_bias:  # after the default init: the random streams are the same either way
        block = slice(cell.gates.index("forget") * cfg.hidden_size,
                      (cell.gates.index("forget") + 1) * cfg.hidden_size)
        with torch.no_grad():
            for name, bias in rnn.named_parameters():
                if name.startswith("bias_"):  # the sum b_ih + b_hh is what the gate sees
                    bias[block] = cfg.forget_bias if name.startswith("bias_ih") else 0.0
    return rnn


def final_hidden(h_n: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """h_n of any cell: the LSTM's ``(h, c)`` pair is unpacked here and nowhere else."""
    return h_n[0] if isinstance(h_n, tuple) else h_n


def run_recurrent(rnn: nn.RNNBase, x: Tensor, lengths: Tensor | None):
    """Run ``rnn`` over ``x`` (B, T, F); with ``lengths`` (B,) the padding is skipped.

    Returns ``(outputs (B, T, D*H), h_n (L*D, B, H))``; outputs past a sequence's
    length are zero. A runner attached by :func:`rnnlab.core.backends.use_backend`
    (a faster backend, bfloat16) takes over the call when present.
    """
    runner = rnn.__dict__.get("rnnlab_runner")
    if runner is not None:
        return runner(rnn, x, lengths, stock_recurrent)
    return stock_recurrent(rnn, x, lengths)


def stock_recurrent(rnn: nn.RNNBase, x: Tensor, lengths: Tensor | None):
    """:func:`run_recurrent` by the ``nn.*`` module itself."""
    if lengths is None:
        out, h_n = rnn(x)
        return out, final_hidden(h_n)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, final_hidden(h_n)


class RecurrentModel(nn.Module):
    """The recurrent layers, dropout and a linear head; subclasses say what the head reads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.rnn = make_recurrent(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.directions * cfg.hidden_size, cfg.num_outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        assert x.dim() == 3, f"expected (B, T, F) input, got shape {tuple(x.shape)}"
        assert lengths is None or self.cfg.readout != "last_step", \
            "the last_step readout is for full-length sequences only"
        out, h_n = run_recurrent(self.rnn, x, lengths)  # out: (B, T, D*H), h_n: (L*D, B, H)
        return self.readout(out, h_n)

    def readout(self, out: Tensor, h_n: Tensor) -> Tensor:
        """The head over the recurrent layers' outputs (subclasses: which of them it reads)."""
        raise NotImplementedError


class SequenceClassifier(RecurrentModel):
    """One label per sequence, read from h_n of every direction of the last layer.

    The reference read the output at the last time step, which for the backward
    direction has seen only the last row; h_n of the backward direction has seen
    the whole sequence.
    """

    def readout(self, out: Tensor, h_n: Tensor) -> Tensor:
        """out (B, T, D*H), h_n (L*D, B, H) -> logits (B, C)."""
        if self.cfg.readout == "last_step":  # the reference's readout; only to measure the flaw
            features = out[:, -1]  # (B, D*H)
        else:
            last_layer = h_n[-self.cfg.directions :]  # (D, B, H) forward then backward
            features = torch.cat(list(last_layer), dim=-1)  # (B, D*H)
        return self.head(self.dropout(features))  # (B, C)


class PerStepModel(RecurrentModel):
    """One output per time step (e.g. one sum bit per input bit pair)."""

    def readout(self, out: Tensor, h_n: Tensor) -> Tensor:
        """out (B, T, D*H) -> logits (B, T, num_outputs), or (B, T) for one output."""
        logits = self.head(self.dropout(out))  # (B, T, num_outputs)
        return logits.squeeze(-1) if self.cfg.num_outputs == 1 else logits  # (B, T) for bits


MODEL_KINDS: dict[str, type[RecurrentModel]] = {"classifier": SequenceClassifier,
                                           "per_step": PerStepModel}


def build_model(kind: str, cfg: ModelConfig) -> nn.Module:
    if kind not in MODEL_KINDS:
        raise UnknownNameError(f"unknown model kind {kind!r}; "
                               f"choose one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
