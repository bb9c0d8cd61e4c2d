"""The fonts test set of bench/font_digits.py: MNIST-shaped digits, the right labels,
the same images for the same seed; and its scoring of predictions."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFont

from rnnlab.core.images import centre_of_mass

# bench/ is a folder of scripts beside the package, not installed: load the file itself
SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "font_digits.py"
SPEC = importlib.util.spec_from_file_location("font_digits", SCRIPT)
font_digits = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = font_digits  # dataclasses look their module up while being made
SPEC.loader.exec_module(font_digits)

FONTS = font_digits.installed_fonts()
needs_fonts = pytest.mark.skipif(not FONTS, reason="no fonts with digits installed (fc-list)")


def test_a_digit_is_drawn_the_way_mnist_was_made():
    """Pillow's own font (no installed fonts needed): ink fits 20x20, centred by mass."""
    pixels = font_digits.render_digit(7, ImageFont.load_default(size=48), angle=5.0, stroke=2)
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    rows = np.flatnonzero(pixels.any(axis=1))
    cols = np.flatnonzero(pixels.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # 20, plus Lanczos's fringe
    assert pixels.max() == 255
    cy, cx = centre_of_mass(pixels.astype(np.float32))
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


@needs_fonts
def test_twenty_images_have_their_labels_and_repeat_for_a_seed(tmp_path):
    pixels, drawn = font_digits.render_set(FONTS, per_class=2, seed=3)
    assert pixels.shape == (20, 28, 28) and pixels.dtype == np.uint8
    assert [d.label for d in drawn] == [d for d in range(10) for _ in range(2)]
    assert all(image.max() == 255 for image in pixels)  # every one has ink
    again, drawn_again = font_digits.render_set(FONTS, per_class=2, seed=3)
    assert np.array_equal(pixels, again) and drawn == drawn_again
    other, _ = font_digits.render_set(FONTS, per_class=2, seed=4)
    assert not np.array_equal(pixels, other)
    font_digits.write_set(tmp_path / "images", pixels, drawn)
    with open(tmp_path / "images" / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == [d.label for d in drawn]
    assert len(list((tmp_path / "images").glob("*.png"))) == 20


def test_score_counts_per_class_and_the_commonest_mistakes(tmp_path):
    drawn = [font_digits.FontDigit(f"{d}-{k}.png", d, "f.ttf", 40, 0.0, 0)
             for d in range(10) for k in range(2)]
    predicted = {item.file: item.label for item in drawn}
    predicted["1-0.png"], predicted["1-1.png"] = 7, 7
    del predicted["9-0.png"]  # a file predict did not answer for counts as wrong
    result = font_digits.score(tmp_path, predicted, drawn)
    assert result.correct == [2, 0, 2, 2, 2, 2, 2, 2, 2, 1] and result.total == [2] * 10
    assert result.accuracy == pytest.approx(17 / 20)
    assert result.confusions[0] == (1, 7, 2) and result.mnist_test is None
    table = font_digits.markdown([result], [Path("a.ttf")], 2, 0)
    assert "**85.0**" in table and "1 -> 7: 2" in table
