"""CLI flags shared by every ``rnnlab train`` task, grouped as the help shows them,
and their conversion back into the typed configs. Defaults come from the configs
(each task passes its own), so the help can never drift from the code."""

from __future__ import annotations

import argparse

from rnnlab.core.backends import BACKENDS, PRECISIONS
from rnnlab.core.cells import cell_names
from rnnlab.core.models import ModelConfig
from rnnlab.core.train import OPTIMIZERS, SCHEDULES, TrainConfig


def add_model_options(parser: argparse.ArgumentParser, d: ModelConfig, hidden_list: bool = False) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--cell", choices=cell_names(), default=d.cell, help="recurrent cell")
    if hidden_list:
        g.add_argument("--hidden", type=int, nargs="+", default=[d.hidden_size], metavar="H",
                       help="hidden size; several sizes train one run each, one after the other")
    else:
        g.add_argument("--hidden", type=int, default=d.hidden_size, metavar="H", help="hidden size")
    g.add_argument("--layers", type=int, default=d.num_layers, help="stacked recurrent layers")
    g.add_argument("--bidirectional", action="store_true", default=d.bidirectional,
                   help="read each sequence in both directions")
    g.add_argument("--dropout", type=float, default=d.dropout,
                   help="dropout between layers and before the output layer")


def add_optim_options(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training data")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optimizer")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 / decoupled weight decay")
    g.add_argument("--clip", type=float, default=d.clip, help="clip the global gradient norm to this (off when unset)")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule, stepped every batch")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for weights, data order and generated data")
    g.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="recurrent layer: stock nn.*, a torch.compile'd step loop, or auto: compiled "
                        "for full-length batches of a long enough run (docs/benchmarks.md)")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="bf16: bfloat16 matmuls (autocast), float32 weights and cell state")


def add_output_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    g = parser.add_argument_group("output and runtime")
    g.add_argument("--out", default=default_out, help="run folder (config, metrics, checkpoints, figures)")
    g.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores this process may use, less those "
                        "other processes keep busy at the start)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--dry-run", action="store_true", help="a few batches end to end, in seconds, to check the setup")
    g.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    g.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files (needs the tensorboard extra)")


def model_config_from_args(args: argparse.Namespace, input_size: int, num_outputs: int,
                           hidden: int | None = None) -> ModelConfig:
    return ModelConfig(cell=args.cell, input_size=input_size,
                       hidden_size=args.hidden if hidden is None else hidden,
                       num_layers=args.layers, bidirectional=args.bidirectional,
                       dropout=args.dropout, num_outputs=num_outputs)


def train_config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    values = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                  weight_decay=args.weight_decay, clip=args.clip, schedule=args.schedule, seed=args.seed,
                  backend=args.backend, precision=args.precision)
    values.update(overrides)
    return TrainConfig(**values)
