"""Image prediction: MNIST-style preprocessing of user images, file formats, a tiny
model trained here that reads its own training images back from PNG files, and
every bad input ending as one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from rnnlab.core import images
from rnnlab.core.errors import UserError
from rnnlab.core.images import centre_of_mass, preprocess_image
from rnnlab.core.records import RunRecord

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


# -- synthetic digits -----------------------------------------------------------------
def draw(shape: str, size: tuple[int, int] = (64, 64), centre=None, radius: float = 20,
         fg=BLACK, bg=WHITE, mode: str = "RGB", width: int | None = None) -> Image.Image:
    """A thick synthetic glyph: ``ring`` (a 0), ``seven``, ``bar`` (a 1), ``dash`` or ``cross``."""
    img = Image.new(mode, size, bg)
    d = ImageDraw.Draw(img)
    cx, cy = centre if centre is not None else (size[0] / 2, size[1] / 2)
    r = radius
    w = width or max(1, round(r / 4))
    if shape == "ring":
        d.ellipse([cx - 0.7 * r, cy - r, cx + 0.7 * r, cy + r], outline=fg, width=w)
    elif shape == "seven":
        d.line([(cx - 0.6 * r, cy - r), (cx + 0.6 * r, cy - r), (cx - 0.2 * r, cy + r)], fill=fg,
               width=w, joint="curve")
    elif shape == "bar":
        d.line([(cx, cy - r), (cx, cy + r)], fill=fg, width=w)
    elif shape == "dash":
        d.line([(cx - r, cy), (cx + r, cy)], fill=fg, width=w)
    elif shape == "cross":
        d.line([(cx - r, cy - r), (cx + r, cy + r)], fill=fg, width=w)
        d.line([(cx - r, cy + r), (cx + r, cy - r)], fill=fg, width=w)
    else:
        raise ValueError(shape)
    return img


def ink_stats(out: np.ndarray) -> tuple[tuple[float, float], float, int, int]:
    """(centre of mass, ink mass in full pixels, bbox height, bbox width)."""
    a = out.astype(np.float64) / 255.0
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    return centre_of_mass(a), float(a.sum()), rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def rgba_transparent(shape: str) -> Image.Image:
    """Black opaque ink on a fully transparent (black, alpha 0) background."""
    img = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    ink = draw(shape, (80, 80), radius=25, fg=255, bg=0, mode="L")
    img.putalpha(ink)
    return img


def sixteen_bit(shape: str) -> Image.Image:
    """Light-on-dark in 16-bit grey: background 1000, ink 60000 of 65535."""
    mask = np.asarray(draw(shape, (90, 70), radius=22, fg=255, bg=0, mode="L")) > 127
    a = np.where(mask, 60000, 1000).astype(np.uint16)
    return Image.fromarray(a)  # mode "I;16"


VARIANTS = {
    "dark-on-light small": lambda s: draw(s, (40, 40), radius=12),
    "dark-on-light large off-centre": lambda s: draw(s, (600, 400), (150, 280), radius=90),
    "light-on-dark": lambda s: draw(s, (64, 64), radius=20, fg=WHITE, bg=BLACK),
    "grey L, tiny glyph in a corner": lambda s: draw(s, (200, 200), (30, 170), radius=8, fg=40,
                                                     bg=220, mode="L"),
    "coloured ink on coloured paper": lambda s: draw(s, (128, 96), (80, 40), radius=25,
                                                     fg=(20, 20, 160), bg=(250, 240, 170)),
    "yellow ink on navy": lambda s: draw(s, (100, 100), radius=30, fg=(255, 230, 0), bg=(0, 0, 60)),
    "RGBA transparent background": rgba_transparent,
    "palette": lambda s: (draw(s, (70, 90), (30, 50), radius=20)
                          .convert("P", palette=Image.Palette.ADAPTIVE)),
    "LA": lambda s: draw(s, (64, 64), radius=20, fg=(0, 255), bg=(255, 255), mode="LA"),
    "16-bit grey": sixteen_bit,
    "1-bit": lambda s: draw(s, (64, 64), radius=20, fg=0, bg=1, mode="1"),
}


@pytest.mark.parametrize("shape", ["ring", "seven"])
def test_preprocess_centres_and_scales_every_variant(shape):
    reference = ink_stats(preprocess_image(draw(shape, (64, 64), radius=20)))
    for name, make in VARIANTS.items():
        out = preprocess_image(make(shape), name)
        assert out.dtype == np.uint8 and out.shape == (28, 28), name
        (cy, cx), mass, height, width = ink_stats(out)
        assert abs(cy - 14) <= 1.0 and abs(cx - 14) <= 1.0, (name, cy, cx)
        assert max(height, width) <= 20 and max(height, width) >= 18, (name, height, width)
        assert out.max() == 255, name
        assert abs(mass - reference[1]) <= 0.3 * reference[1], (name, mass, reference[1])
        if shape == "ring":  # symmetric: its 20x20 box sits 4 pixels from each edge
            assert (out[:3].sum() == out[-3:].sum() == out[:, :3].sum()
                    == out[:, -3:].sum() == 0), name


def test_preprocess_keeps_aspect_ratio():
    out = preprocess_image(draw("bar", (100, 100), radius=40, width=8))
    _, _, height, width = ink_stats(out)
    assert height == 20 and width <= 6  # a tall thin stroke stays tall and thin


def test_preprocess_inverts_only_light_backgrounds():
    dark_on_light = preprocess_image(draw("ring", radius=20))
    light_on_dark = preprocess_image(draw("ring", radius=20, fg=WHITE, bg=BLACK))
    assert np.abs(dark_on_light.astype(int) - light_on_dark.astype(int)).max() <= 1


def test_preprocess_of_an_mnist_like_image_is_a_fixed_point():
    first = preprocess_image(draw("seven", (28, 28), radius=9, fg=WHITE, bg=BLACK))
    again = preprocess_image(Image.fromarray(first))
    assert np.abs(first.astype(int) - again.astype(int)).mean() < 8


@pytest.mark.parametrize("img", [Image.new("L", (0, 0)), Image.new("RGB", (0, 5))])
def test_preprocess_rejects_an_empty_image(img):
    with pytest.raises(UserError, match=r"^scan\.png: empty image"):
        preprocess_image(img, "scan.png")


@pytest.mark.parametrize("img", [
    Image.new("RGB", (50, 40), (250, 250, 250)),
    Image.new("L", (1, 1)),
    Image.fromarray(np.random.default_rng(0).integers(240, 256, (60, 60), dtype=np.uint8)),
])
def test_preprocess_rejects_a_blank_page(img):
    with pytest.raises(UserError, match=r"^page\.png: blank page"):
        preprocess_image(img, "page.png")


# -- file formats ---------------------------------------------------------------------
@pytest.mark.parametrize("suffix, mode", [
    (".png", "RGB"),
    (".png", "RGBA"),
    (".png", "P"),
    (".png", "I;16"),
    (".jpg", "RGB"),
    (".jpeg", "L"),
    (".bmp", "RGB"),
    (".bmp", "1"),
    (".gif", "P"),
    (".tif", "RGB"),
    (".tiff", "I;16"),
])
def test_every_format_round_trips(tmp_path, suffix, mode):
    original = draw("seven", (96, 80), (40, 45), radius=25)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(original.convert("L")).astype(np.uint16) * 257)
    elif mode == "RGBA":
        img = original.convert("RGBA")
        # ink opaque, paper clear
        img.putalpha(Image.eval(original.convert("L"), lambda v: 255 - v))
    else:
        img = original.convert(mode)
    path = tmp_path / f"digit{suffix}"
    img.save(path)
    expected = preprocess_image(original).astype(int)
    got = images.load_image(path).astype(int)
    assert np.abs(got - expected).mean() < 6, np.abs(got - expected).mean()


def test_gif_reads_the_first_frame(tmp_path):
    frames = [draw("ring").convert("P"), draw("dash").convert("P")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    got = images.load_image(tmp_path / "anim.gif").astype(int)
    assert np.abs(got - preprocess_image(draw("ring")).astype(int)).mean() < 6


# -- a tiny model trained here --------------------------------------------------------
SHAPES = ["ring", "bar", "dash", "cross"]  # labelled as digits 0..3


def training_image(label: int, rng: np.random.Generator) -> Image.Image:
    """One glyph at a random size, place, stroke width and polarity on a random canvas."""
    w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    r = float(rng.uniform(0.2, 0.35)) * min(w, h)
    centre = (w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h)
    fg, bg = (BLACK, WHITE) if rng.random() < 0.5 else (WHITE, BLACK)
    return draw(SHAPES[label], (w, h), centre, r, fg, bg,
                width=max(2, round(r * rng.uniform(0.15, 0.3))))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """An LSTM trained for a few seconds on 160 preprocessed synthetic glyphs."""
    from rnnlab.core.models import ModelConfig
    from rnnlab.core.runs import RunPlan, TaskData, execute_run
    from rnnlab.core.train import (
        ClassificationObjective,
        ShuffledBatches,
        TensorDataset,
        TrainConfig,
    )
    from rnnlab.tasks.mnist.data import MnistConfig as MnistTaskConfig
    from rnnlab.tasks.mnist.data import normalise

    rng = np.random.default_rng(7)
    labels = [i % len(SHAPES) for i in range(160)]
    raw = [training_image(label, rng) for label in labels]
    x = normalise(torch.from_numpy(np.stack([preprocess_image(img) for img in raw])), "mnist")
    data = TensorDataset(x, torch.tensor(labels))
    out = tmp_path_factory.mktemp("runs") / "glyphs"
    plan = RunPlan(out, "mnist", "classifier", ModelConfig(cell="lstm", hidden_size=32),
                   TrainConfig(epochs=12, batch_size=32, lr=0.01, seed=1, eval_batch_size=160),
                   asdict(MnistTaskConfig()), quiet=True)
    objective = ClassificationObjective()
    summary = execute_run(plan, lambda: TaskData(ShuffledBatches(data, 32, 1), data.in_order(160),
                                                 objective),
                          lambda model, record: {"accuracy": 0.0})
    assert summary["best_valid_accuracy"] == 1.0, "the tiny model must learn its own training set"
    return out, raw, labels


def predict_images(record: RunRecord, inputs: list[str], args: argparse.Namespace) -> int:
    """``rnnlab predict`` through the command's own handler (printing, exit code)."""
    from rnnlab.cli.train import run_predict

    return run_predict(argparse.Namespace(run=str(record.dir), inputs=list(inputs), threads=1,
                                          device="cpu",
                                          **vars(args)))


def predict_args(**overrides) -> argparse.Namespace:
    defaults = dict(top=1, json=False, show_input=None, batch_size=3, quiet=True, max_length=10_000,
                    dry_run=False)
    return argparse.Namespace(**{**defaults, **overrides})


def write_pngs(folder: Path, raw, labels, count: int = 8) -> list[tuple[Path, int]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        path = folder / f"glyph{i:02d}.png"
        raw[i].save(path)
        written.append((path, labels[i]))
    return written


def test_model_predicts_its_training_images_from_png(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    written = write_pngs(tmp_path / "in", raw, labels)
    code = predict_images(RunRecord.open(run), [str(p) for p, _ in written], predict_args())
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == len(written)
    for line, (path, label) in zip(lines, written, strict=True):
        assert line.startswith(f"{path}: {label} (") and line.endswith("%)"), line


def test_folder_glob_top_and_json(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    written = write_pngs(tmp_path / "in", raw, labels, count=5)
    (tmp_path / "in" / "notes.txt").write_text("not an image, and not picked from a folder")
    record = RunRecord.open(run)
    assert predict_images(record, [str(tmp_path / "in")], predict_args(top=3)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(p) for p, _ in written]  # sorted
    assert all(line.count("%)") == 3 for line in lines)
    assert predict_images(record, [str(tmp_path / "in" / "glyph0[0-2].png")],
                                 predict_args(json=True, top=2)) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["file"] for o in objs] == [str(p) for p, _ in written[:3]]
    for obj, (_, label) in zip(objs, written, strict=False):
        assert obj["prediction"] == label and obj["label_name"] == str(label)
        probs = [p["probability"] for p in obj["probabilities"]]
        assert (len(probs) == 2 and probs == sorted(probs, reverse=True)
                and 0 < sum(probs) <= 1 + 1e-6)


def test_show_input_writes_what_the_model_saw(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    written = write_pngs(tmp_path / "in", raw, labels, count=2)
    record = RunRecord.open(run)
    one = tmp_path / "seen.png"
    assert predict_images(record, [str(written[0][0])], predict_args(show_input=str(one))) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(one)), preprocess_image(raw[0]))
    assert predict_images(record, [str(p) for p, _ in written],
                                 predict_args(show_input=str(tmp_path / "seen.png"))) == 0
    for path, _ in written:
        saved = np.asarray(Image.open(tmp_path / f"seen-{path.stem}.png"))
        np.testing.assert_array_equal(saved, images.load_image(path))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files
    capsys.readouterr()


def test_dry_run_predicts_nothing(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    written = write_pngs(tmp_path / "in", raw, labels, count=2)
    code = predict_images(RunRecord.open(run), [str(tmp_path / "in")], predict_args(dry_run=True))
    out = capsys.readouterr().out
    assert (code == 0 and out.startswith("dry run: 2 of 2 input(s) readable")
            and str(written[0][0]) not in out)


# -- bad inputs: one line each, exit code 2, the good images still predicted --------------
def make_bad(kind: str, folder: Path) -> Path:
    path = folder / f"bad-{kind}.png"
    if kind == "not-an-image":
        path.write_text("this is a shopping list, not a digit\n")
    elif kind == "truncated":
        draw("ring", (200, 200), radius=60).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        Image.new("RGB", (64, 64), (248, 248, 246)).save(path)
    elif kind != "missing":
        raise ValueError(kind)
    return path


BAD = {"missing": "no such file", "not-an-image": "not an image",
       "truncated": "truncated or corrupt", "empty": "empty file", "blank": "blank page"}


def run_cli(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    from rnnlab.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_input_is_one_line_and_exit_code_2(trained_run, tmp_path, capsys, kind):
    run, raw, labels = trained_run
    (good, label), = write_pngs(tmp_path / "in", raw, labels, count=1)
    bad = make_bad(kind, tmp_path)
    code, out, err = run_cli(["predict", str(run), str(bad), str(good), "--quiet"], capsys)
    assert code == 2
    assert (err == [f"rnnlab: error: {bad}: {err[0].split(': ', 3)[-1]}"]
            and BAD[kind] in err[0]), err
    assert out == [line for line in out if line.startswith(f"{good}: {label} (")] and len(out) == 1


def test_all_bad_inputs_in_one_call(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    written = write_pngs(tmp_path / "in", raw, labels, count=2)
    bad = [make_bad(kind, tmp_path) for kind in BAD]
    argv = ["predict", str(run), str(written[0][0]), *map(str, bad), str(written[1][0]),
            str(tmp_path / "nothing-*.png"), "--quiet", "--batch-size", "2"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert len(err) == len(bad) + 1 and all(line.startswith("rnnlab: error: ") for line in err)
    for path in [*bad, tmp_path / "nothing-*.png"]:
        assert sum(str(path) in line for line in err) == 1, path
    assert [line.split(": ")[0] for line in out] == [str(p) for p, _ in written]


def test_names_the_file_system_refuses_are_one_line_and_the_good_image_is_predicted(trained_run,
                                                                                    tmp_path,
                                                                                    capsys):
    run, raw, labels = trained_run
    (good, label), = write_pngs(tmp_path / "in", raw, labels, count=1)
    too_long = str(tmp_path / ("a" * 300 + ".png"))
    glob_too_long = str(tmp_path / ("x*" + "a" * 300))
    code, out, err = run_cli(["predict", str(run), too_long, glob_too_long, str(good), "--quiet"],
                             capsys)
    assert code == 2 and len(err) == 2 and all("File name too long" in line for line in err), err
    assert len(out) == 1 and out[0].startswith(f"{good}: {label} (")
    (tmp_path / "afile").write_text("")
    code, out, err = run_cli(["predict", str(run), str(good), "--quiet",
                              "--show-input", str(tmp_path / "afile" / "seen.png")], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnlab: error: --show-input "), err


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    image = tmp_path / "digit.png"
    draw("ring").save(image)
    code, out, err = run_cli(["predict", str(tmp_path / "nowhere"), str(image)], capsys)
    assert code == 2 and out == [] and len(err) == 1 and str(tmp_path / "nowhere") in err[0]


def test_a_run_that_is_not_a_digit_model(trained_run, tmp_path):
    run, _, _ = trained_run
    config = json.loads((run / "config.json").read_text())
    other = RunRecord.create(tmp_path / "recall-run", {**config, "task": "recall"})
    with pytest.raises(UserError, match=r"recall does not know: (augment, )?augment_shift"):
        predict_images(other, ["digit.png"], predict_args())
    per_step = RunRecord.create(tmp_path / "per-step", config)
    payload = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    del payload["format"]
    per_step.save_checkpoint("best", {**payload, "model_kind": "per_step"})
    with pytest.raises(UserError, match="not an image model"):
        predict_images(per_step, ["digit.png"], predict_args())


def test_bad_options_are_one_line_errors(trained_run, tmp_path):
    run, _, _ = trained_run
    record = RunRecord.open(run)
    with pytest.raises(UserError, match=r"top must be in 1..10"):
        predict_images(record, ["x.png"], predict_args(top=11))
    with pytest.raises(UserError, match="batch_size must be >= 1"):
        predict_images(record, ["x.png"], predict_args(batch_size=0))
    with pytest.raises(UserError, match="show_input"):
        predict_images(record, ["x.png"], predict_args(show_input=str(tmp_path / "seen.nope")))
    draw("ring").save(tmp_path / "digit.png")
    with pytest.raises(UserError, match="would overwrite the input"):
        predict_images(record, [str(tmp_path / "digit.png")],
                              predict_args(show_input=str(tmp_path / "digit.png")))
    assert images.load_image(tmp_path / "digit.png").any()


def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    upright = draw("seven", (80, 64), radius=22)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    got = images.load_image(tmp_path / "photo.jpg").astype(int)
    assert np.abs(got - preprocess_image(upright).astype(int)).mean() < 6


def test_fashion_layout_fills_the_field_and_centres_the_box():
    out = preprocess_image(draw("dash", (120, 80), (30, 20), radius=20, width=10),
                           dataset="fashion-mnist")
    _, _, height, width = ink_stats(out)
    assert width == 28 and 5 <= height <= 8
    rows = np.flatnonzero(out.any(axis=1))
    assert abs((rows[0] + rows[-1]) / 2 - 13.5) <= 0.5


def test_a_fashion_run_prints_class_names(trained_run, tmp_path, capsys):
    run, raw, labels = trained_run
    fashion = tmp_path / "fashion"
    config = json.loads((run / "config.json").read_text())
    config["task_config"]["dataset"] = "fashion-mnist"
    record = RunRecord.create(fashion, config)
    payload = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    payload["task_config"] = config["task_config"]
    del payload["format"]
    record.save_checkpoint("best", payload)
    (path, _), = write_pngs(tmp_path / "in", raw, labels, count=1)
    assert predict_images(record, [str(path)], predict_args(json=True)) == 0
    obj = json.loads(capsys.readouterr().out)
    from rnnlab.tasks.mnist.data import CLASS_NAMES

    assert obj["label_name"] == CLASS_NAMES["fashion-mnist"][obj["prediction"]]
