"""Accuracy of MNIST runs on printed digits: a test set rendered from the fonts installed
on this machine, read through ``rnnlab predict`` as a user would.

The set: ``--per-class`` images of each digit (default 100, so 1,000), each from a font
file that ``fc-list`` says covers the digits (DejaVu and Liberation here: sans, serif,
mono, condensed, narrow; regular, bold, italic, oblique), drawn white on black at a
random size with a random stroke width (PIL's ``stroke_width``: bolder than the font),
turned by a random small angle, then made the way MNIST's digits were made: cropped to
the ink, scaled into a 20x20 box (aspect kept) and placed in a 28x28 field with its
centre of mass at the centre (``rnnlab.core.images.preprocess_image``). Seeded: the same
seed and fonts give the same images. Written as PNGs plus ``labels.csv`` (file, label,
font, size, angle, stroke) into ``OUT/images``, with a sheet of the first ten of each
class, ``OUT/font-digits-sample.png``.

Then ``rnnlab predict RUN OUT/images --json`` runs for each run folder given: each
image's prediction goes to ``OUT/predictions-<n>-<run folder name>.csv``, and the
accuracy per run and per class to ``OUT/font-digits.md`` (also printed).

    python bench/font_digits.py RUN [RUN ...] --out DIR [--per-class 100] [--seed 2111]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rnnlab.core import images
from rnnlab.core.errors import UserError
from rnnlab.core.fileio import atomic_write_text, atomic_write_with
from rnnlab.core.records import RunRecord

DIGITS_CHARSET = ":charset=0030-0039"  # fc-list pattern: fonts that have the glyphs 0-9
FONT_SUFFIXES = (".ttf", ".otf")
SIZES = (20, 96)  # font size in pixels, drawn uniformly: small sizes render coarser glyphs
MAX_ANGLE = 10.0  # degrees, either way
MAX_STROKE = 0.08  # extra stroke width as a fraction of the font size (0: the font's own)


@dataclass(frozen=True)
class FontDigit:
    """How one image of the set was drawn."""

    file: str  # the PNG's name in the images folder
    label: int
    font: str  # the font file's name
    size: int  # font size, pixels
    angle: float  # degrees, counter-clockwise
    stroke: int  # PIL stroke_width, pixels


# -- the set ---------------------------------------------------------------------------
def installed_fonts() -> list[Path]:
    """Font files fontconfig lists as having the digits, sorted by name (an empty list
    where fontconfig is missing)."""
    try:
        listed = subprocess.run(["fc-list", DIGITS_CHARSET, "file"], capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    paths = {Path(line.split(":")[0].strip()) for line in listed.splitlines() if line.strip()}
    return sorted((p for p in paths if p.suffix.lower() in FONT_SUFFIXES), key=lambda p: p.name)


def render_digit(digit: int, font: ImageFont.FreeTypeFont, angle: float,
                 stroke: int) -> np.ndarray:
    """One digit drawn white on black, turned by ``angle``, made MNIST-like: uint8 (28, 28)."""
    size = int(font.size)
    side = 3 * size + 4 * stroke  # room for the glyph, its stroke and the turn
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text((side / 2, side / 2), str(digit), fill=255, font=font,
                                anchor="mm", stroke_width=stroke, stroke_fill=255)
    turned = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=0)
    return images.preprocess_image(turned, f"digit {digit}", "mnist")


def render_set(fonts: list[Path], per_class: int,
               seed: int) -> tuple[np.ndarray, list[FontDigit]]:
    """uint8 (10 * per_class, 28, 28) and how each was drawn, class by class. Each class
    uses the fonts in turn (shuffled), so every font draws every digit about equally."""
    if not fonts:
        raise UserError("no font with the digits 0-9 found (fc-list); install fonts-dejavu "
                        "or fonts-liberation, or pass font files")
    rng = np.random.default_rng(seed)
    pixels, drawn = [], []
    for digit in range(10):
        order = rng.permutation(np.resize(np.arange(len(fonts)), per_class))
        for k, font_index in enumerate(order):
            path = fonts[int(font_index)]
            size = int(rng.integers(SIZES[0], SIZES[1] + 1))
            angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
            stroke = int(rng.integers(0, math.floor(MAX_STROKE * size) + 1))
            font = ImageFont.truetype(str(path), size)
            pixels.append(render_digit(digit, font, angle, stroke))
            drawn.append(FontDigit(f"{digit}-{k:04d}.png", digit, path.name, size,
                                   round(angle, 2), stroke))
    return np.stack(pixels), drawn


def write_set(folder: Path, pixels: np.ndarray, drawn: list[FontDigit]) -> None:
    """The PNGs and labels.csv into ``folder`` (emptied first: stale images would be read)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for image, item in zip(pixels, drawn, strict=True):
        png = Image.fromarray(image)
        atomic_write_with(folder / item.file, lambda fh, png=png: png.save(fh, format="PNG"))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(asdict(drawn[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(item) for item in drawn)
    atomic_write_text(folder / "labels.csv", text.getvalue())


def sample_sheet(pixels: np.ndarray, per_class: int, path: Path, shown: int = 10) -> None:
    """The first ``shown`` images of each class, one row per class, at twice the size."""
    rows = [np.concatenate(list(pixels[d * per_class : d * per_class + shown]), axis=1)
            for d in range(10)]
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    sheet = sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST)
    atomic_write_with(path, lambda fh: sheet.save(fh, format="PNG"))


# -- prediction through the command line -----------------------------------------------
def rnnlab_command() -> list[str]:
    """The ``rnnlab`` a user of this environment runs: the one beside this Python."""
    script = Path(sys.executable).with_name("rnnlab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rnnlab"]


def predict(run: Path, folder: Path, threads: int) -> dict[str, int]:
    """``rnnlab predict RUN FOLDER --json``: the predicted class of each file by name."""
    command = [*rnnlab_command(), "predict", str(run), str(folder), "--json", "--quiet",
               "--threads", str(threads), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"rnnlab predict {run} failed (exit {done.returncode}): "
                        f"{done.stderr.strip()[-400:]}")
    found = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        found[Path(record["file"]).name] = int(record["prediction"])
    return found


def write_predictions(path: Path, predicted: dict[str, int], drawn: list[FontDigit]) -> None:
    """One row per image: how it was drawn and what the run predicted (-1: no answer)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*asdict(drawn[0]), "prediction"])
    writer.writerows([*asdict(item).values(), predicted.get(item.file, -1)] for item in drawn)
    atomic_write_text(path, text.getvalue())


@dataclass
class RunScore:
    run: str
    mnist_test: float | None  # the run's own MNIST test accuracy (summary.json)
    correct: list[int]  # per class
    total: list[int]
    confusions: list[tuple[int, int, int]]  # (true, predicted, count), most frequent first

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / sum(self.total)


def score(run: Path, predicted: dict[str, int], drawn: list[FontDigit]) -> RunScore:
    correct, total, wrong = [0] * 10, [0] * 10, Counter()
    for item in drawn:
        guess = predicted.get(item.file, -1)  # a file predict skipped counts as wrong
        total[item.label] += 1
        correct[item.label] += guess == item.label
        if guess != item.label:
            wrong[item.label, guess] += 1
    summary = RunRecord.open(run).summary() if (run / "summary.json").is_file() else {}
    mnist = summary.get("test", {}).get("accuracy")
    return RunScore(str(run), mnist, correct, total,
                    [(t, p, n) for (t, p), n in wrong.most_common(5)])


def markdown(scores: list[RunScore], fonts: list[Path], per_class: int, seed: int) -> str:
    pct = "{:.1f}".format
    lines = ["# Row-MNIST runs on digits rendered from fonts", "",
             f"{10 * per_class:,} images ({per_class} per digit), seed {seed}, from "
             f"{len(fonts)} font files ({', '.join(sorted({f.stem for f in fonts}))}); "
             f"sizes {SIZES[0]}-{SIZES[1]} px, turned by up to {MAX_ANGLE:g} degrees, extra "
             f"stroke up to {MAX_STROKE:g} of the size; read by `rnnlab predict --json`.", "",
             "| run | MNIST test % | fonts % | " + " | ".join(map(str, range(10))) + " |",
             "|---|---:|---:|" + "---:|" * 10]
    for s in scores:
        mnist = f"{100 * s.mnist_test:.2f}" if s.mnist_test is not None else "–"
        per_class = " | ".join(pct(100 * c / max(t, 1)) for c, t in zip(s.correct, s.total,
                                                                         strict=True))
        lines.append(f"| {s.run} | {mnist} | **{pct(100 * s.accuracy)}** | {per_class} |")
    lines += ["", "Most frequent mistakes (true -> predicted: images):", ""]
    for s in scores:
        mistakes = ", ".join(f"{t} -> {p}: {n}" for t, p, n in s.confusions) or "none"
        lines.append(f"- {s.run}: {mistakes}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="MNIST run folders to measure")
    parser.add_argument("--out", required=True, help="folder for images/, the sheet and the table")
    parser.add_argument("--per-class", type=int, default=100, help="images of each digit")
    parser.add_argument("--seed", type=int, default=2111, help="seed of the set")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of rnnlab predict")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        fonts = installed_fonts()
        pixels, drawn = render_set(fonts, args.per_class, args.seed)
        write_set(out / "images", pixels, drawn)
        sample_sheet(pixels, args.per_class, out / "font-digits-sample.png")
        for stale in out.glob("predictions-*.csv"):  # an earlier call's, maybe of other runs
            stale.unlink()
        scores = []
        for n, run in enumerate(args.runs, start=1):
            predicted = predict(Path(run), out / "images", args.threads)
            write_predictions(out / f"predictions-{n}-{Path(run).name}.csv", predicted, drawn)
            scores.append(score(Path(run), predicted, drawn))
    except UserError as err:
        print(f"font_digits: error: {err}", file=sys.stderr)
        return 2
    text = markdown(scores, fonts, args.per_class, args.seed)
    atomic_write_text(out / "font-digits.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
