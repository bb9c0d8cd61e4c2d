"""Accuracy of ``rnnlab predict`` on MNIST test images read back from PNG files.

Each test image is written as a PNG at 4x size (112x112, bilinear by default) with
inverted colours (dark ink on white), as a user's scan would look, then read back
through :func:`rnnlab.tasks.workflow.predict_run`, the code behind ``rnnlab predict``
(file reading, MNIST-style preprocessing, normalisation, model). The accuracy is
printed beside the run's accuracy on the original IDX tensors, so the cost of the
round trip shows. Target: >= 95% for a good LSTM run.

    python bench/predict_png_accuracy.py runs/mnist [--limit 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rnnlab.core.errors import InputError, UserError
from rnnlab.core.records import RunRecord
from rnnlab.core.threads import configure_threads
from rnnlab.tasks.base import PredictOptions
from rnnlab.tasks.mnist import normalise
from rnnlab.tasks.workflow import load_run_model, predict_run

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def write_pngs(images: np.ndarray, folder: Path, scale: int, resample: str) -> list[Path]:
    """uint8 (N, 28, 28) light-on-dark -> N PNGs, dark ink on white, ``scale`` times larger."""
    paths = []
    for i, pixels in enumerate(images):
        size = (pixels.shape[1] * scale, pixels.shape[0] * scale)
        img = Image.fromarray(255 - pixels).resize(size, RESAMPLE[resample])
        path = folder / f"{i:05d}.png"
        img.save(path)
        paths.append(path)
    return paths


def predict_files(record: RunRecord, paths: list[Path],
                  batch_size: int) -> tuple[list[int], int]:
    """Run ``predict_run`` on the files and collect its predictions (in file order), with
    ``rnnlab predict``'s exit code: 2 if any input failed (each named on stderr), else 0."""
    options = PredictOptions(top=1, batch_size=batch_size, max_length=10_000, dry_run=False)
    by_file, code = {}, 0
    for result in predict_run(record.dir, [str(p) for p in paths], options):
        if isinstance(result, InputError):
            print(f"rnnlab: error: {result}", file=sys.stderr)
            code = 2
        else:
            by_file[result.source] = result.label
    return [by_file.get(str(p), -1) for p in paths], code


def mnist_model(record: RunRecord) -> tuple[torch.nn.Module, str]:
    """The run's best model and its dataset; a one-line error for any other kind of run."""
    task, model = load_run_model(record)
    if task.name != "mnist":
        raise UserError(f"{record.dir} is a {task.name!r} run, not a digit model; "
                        "predict images with an MNIST or Fashion-MNIST run")
    return model, task.config.dataset


@torch.no_grad()
def direct_accuracy(record: RunRecord, images: np.ndarray, labels: np.ndarray,
                    dataset: str) -> float:
    model, _ = mnist_model(record)
    logits = torch.cat([model(normalise(torch.from_numpy(images[i : i + 2000]), dataset))
                        for i in range(0, len(images), 2000)])
    return float((logits.argmax(dim=-1).numpy() == labels).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained MNIST run folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--data-dir", default=None,
                        help="data root (default: $RNNLAB_DATA or the user cache)")
    parser.add_argument("--scale", type=int, default=4, help="PNG size as a multiple of 28")
    parser.add_argument("--resample", choices=list(RESAMPLE), default="bilinear",
                        help="PNG upscaling")
    parser.add_argument("--batch-size", type=int, default=500, help="images per batch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="write the PNGs here and keep them")
    args = parser.parse_args(argv)
    try:
        from rnnlab.core.data import default_data_root, load_dataset

        configure_threads(args.threads)
        record = RunRecord.open(args.run)
        _, dataset = mnist_model(record)
        data_root = Path(args.data_dir) if args.data_dir else default_data_root()
        arrays = load_dataset(dataset, data_root)
        images = arrays.test_images[: args.limit].numpy().astype(np.uint8)
        labels = arrays.test_labels[: args.limit].numpy()
        with contextlib.ExitStack() as stack:
            folder = (Path(args.keep) if args.keep
                      else Path(stack.enter_context(tempfile.TemporaryDirectory())))
            folder.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            paths = write_pngs(images, folder, args.scale, args.resample)
            written = time.perf_counter()
            predictions, code = predict_files(record, paths, args.batch_size)
            predicted = time.perf_counter()
    except UserError as err:
        print(f"rnnlab: error: {err}", file=sys.stderr)
        return 2
    correct = int((np.asarray(predictions) == labels).sum())
    direct = direct_accuracy(record, images, labels, dataset)
    size = 28 * args.scale
    print(f"{record.dir}: {correct}/{len(labels)} = {100 * correct / len(labels):.2f}% of "
          f"{dataset} test images read back from {size}x{size} inverted PNGs ({args.resample}); "
          f"{100 * direct:.2f}% on the IDX tensors directly")
    print(f"write {written - started:.1f}s, predict {predicted - written:.1f}s "
          f"({1000 * (predicted - written) / len(labels):.2f} ms/image); predict exit code {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
