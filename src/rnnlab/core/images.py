"""Digits from image files, as a user has them: MNIST-style preprocessing for
``rnnlab predict RUN IMAGE...`` with MNIST and Fashion-MNIST runs.

:func:`preprocess_image` brings any image into the form MNIST itself was made in
(LeCun et al.): greyscale (transparency over white); inverted when the background,
read from the border pixels, is light, so the ink is light on black; cropped to the
ink; scaled to fit a 20x20 box keeping the aspect ratio (antialiased); placed in a
28x28 field with its centre of mass at the centre. For Fashion-MNIST runs the last
two steps follow that data set instead: longest side scaled to 28, box centred.
:func:`expand_inputs` turns files, folders and globs into image paths; the MNIST
task predicts them in batches (``rnnlab.tasks.mnist``).

``show_input="OUT.png"`` writes the 28x28 input the model saw (light ink on black,
exactly the uint8 pixels before normalisation): to ``OUT.png`` itself when the
command names one image, else to ``OUT-<stem>.png`` per image (``OUT-<stem>-2.png``
when two images share a stem), in the order the images are printed.
"""

from __future__ import annotations

import glob
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rnnlab.core.errors import ConfigError, InputError, UserError
from rnnlab.core.fileio import atomic_write_with

SIZE = 28  # the MNIST field
# dataset -> (the ink is scaled to fit box x box, centred by its centre of mass or else its box)
LAYOUTS = {"mnist": (20, True), "fashion-mnist": (28, False)}
# Where the centre lands, in pixel-index coordinates (row, col).
CENTRE = 14.0
MIN_CONTRAST = 0.12  # ink must differ from the background by 12% of full scale, else blank page
INK_THRESHOLD = 0.2  # fraction of the ink's contrast that counts as ink when cropping
# fainter than this (fraction of contrast) is background: JPEG noise, paper grain
NOISE_FLOOR = 0.05
MAX_WORKING_SIDE = 1024  # larger images are box-averaged down first (speed, memory)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                            ".pbm", ".pgm", ".ppm", ".pnm"})
GLOB_CHARS = frozenset("*?[")


# -- preprocessing --------------------------------------------------------------------
def greyscale(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> float32 (H, W) in [0, 1], 1 = white; transparency over white."""
    mode = img.mode
    if mode.startswith("I"):  # 16-bit ("I;16", "I;16B", ...) or 32-bit integer grey
        a = np.asarray(img).astype(np.float32)
        full = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return np.clip(a / full, 0.0, 1.0)
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        return np.clip(a if a.max(initial=0) <= 1.0 else a / 255.0, 0.0, 1.0)
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    try:
        grey = img.convert("L")  # ITU-R 601 luma: L = 0.299 R + 0.587 G + 0.114 B
    except ValueError:  # modes without a direct conversion (LAB, HSV)
        grey = img.convert("RGB").convert("L")
    return np.asarray(grey).astype(np.float32) / 255.0


def box_reduce(a: np.ndarray, max_side: int = MAX_WORKING_SIDE) -> np.ndarray:
    """Average ``k x k`` blocks so neither side exceeds ``max_side`` (exact area antialiasing)."""
    k = math.ceil(max(a.shape) / max_side)
    if k <= 1:
        return a
    h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    if h == 0 or w == 0:  # a long thin strip: keep it whole
        return a
    return a[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def border_level(a: np.ndarray) -> float:
    """The background level: median of the outer ring of pixels (2% of the short side)."""
    b = max(1, min(a.shape) // 50)
    ring = np.concatenate([a[:b].ravel(), a[-b:].ravel(), a[:, :b].ravel(), a[:, -b:].ravel()])
    return float(np.median(ring))


def resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased (Lanczos) resize of a float image, clipped back to [0, 1]."""
    out = Image.fromarray(a.astype(np.float32)).resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """(row, col) centre of mass in pixel-index coordinates."""
    total = float(a.sum())
    rows, cols = np.arange(a.shape[0]), np.arange(a.shape[1])
    return float(a.sum(axis=1) @ rows) / total, float(a.sum(axis=0) @ cols) / total


def preprocess_image(img: Image.Image, name: str | None = None,
                     dataset: str = "mnist") -> np.ndarray:
    """Any image -> uint8 (28, 28) in the form ``dataset`` was made in, light ink on black.

    MNIST: the ink scaled to fit 20x20 (aspect kept), its centre of mass at the centre
    of the field. Fashion-MNIST (Xiao et al. 2017): the longest side scaled to 28, the
    bounding box centred.

    Raises :class:`InputError` naming ``name`` (default: the image's file name) for an
    empty image (no pixels) or a blank page (no ink against the background).
    """
    box, by_mass = LAYOUTS[dataset]
    name = name or getattr(img, "filename", "") or "image"
    width, height = img.size
    if width == 0 or height == 0:
        raise InputError(f"{name}: empty image ({width}x{height} pixels)")
    a = box_reduce(greyscale(img))  # (H, W) in [0, 1], 1 = white
    background = border_level(a)
    if background > 0.5:  # light paper, dark ink: invert so ink is light on black as in MNIST
        a, background = 1.0 - a, 1.0 - background
    ink = np.clip(a - background, 0.0, None)  # (H, W) ink above the background level
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise InputError(f"{name}: blank page (no ink stands out from the background)")
    ink /= contrast
    ink[ink < NOISE_FLOOR] = 0.0
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w) the ink's bounding box
    h, w = crop.shape
    scale = box / max(h, w)
    crop = resize(crop, max(1, round(h * scale)), max(1, round(w * scale)))  # fits box x box
    peak = float(crop.max())
    if peak <= 0.0:  # cannot happen for ink >= INK_THRESHOLD, but never divide by zero
        raise InputError(f"{name}: blank page (no ink left after scaling)")
    crop /= peak  # thin strokes of a large image get faint when shrunk: full strength again
    h, w = crop.shape
    top, left = (SIZE - h) // 2, (SIZE - w) // 2  # the box centred
    if by_mass:
        cy, cx = centre_of_mass(crop)
        top = min(max(round(CENTRE - cy), 0), SIZE - h)  # clamped: the box stays inside the field
        left = min(max(round(CENTRE - cx), 0), SIZE - w)
    field = np.zeros((SIZE, SIZE), dtype=np.float32)
    field[top : top + h, left : left + w] = crop
    return np.round(field * 255.0).astype(np.uint8)


def upright(img: Image.Image) -> Image.Image:
    """Turned as its EXIF orientation says (phone photos); as it is when that tag is unreadable."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not cost the picture
        return img


def load_image(path: str | Path, dataset: str = "mnist") -> np.ndarray:
    """Read one image file (first frame) and preprocess it; every failure is a
    :class:`InputError` whose message starts with the path."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes), not an image")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.seek(0)  # first frame of a GIF or multi-page TIFF
                img.load()
                return preprocess_image(upright(img), str(path), dataset)
    except UserError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read "
                         "(PNG, JPEG, BMP, GIF, TIFF...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image too large "
                         f"(over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except Exception as err:  # Pillow's decoders raise many types on corrupt data
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: truncated or corrupt image ({detail})") from None


# -- inputs ---------------------------------------------------------------------------
def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files as named, folders as their image files (sorted), globs as the image files
    they match (sorted). Returns (paths without duplicates, error messages)."""
    paths: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        try:
            paths += expand_input(item, errors)
        except OSError as err:  # e.g. a name too long for the file system
            errors.append(f"{item[:160]}: {err.strerror or err}")
    return list(dict.fromkeys(paths)), errors


def expand_input(item: str, errors: list[str]) -> list[Path]:
    """The image files one input names; what is wrong with it goes to ``errors``."""
    path = Path(item)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p))
        if not found:
            errors.append(f"{item}: folder holds no image files "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if path.exists() or path.is_symlink():
        return [path]  # a named file is tried whatever its suffix
    if GLOB_CHARS & set(item):
        found = sorted(Path(p) for p in glob.glob(item)
                       if Path(p).is_file() and is_image_name(Path(p)))
        if not found:
            errors.append(f"{item}: no image files match")
        return found
    errors.append(f"{item}: no such file")
    return []


def show_input_paths(out: str, paths: Sequence[Path]) -> list[Path]:
    """Where each image's 28x28 goes: ``out`` for one image, ``OUT-<stem>.png`` for several."""
    target = Path(out)
    if target.suffix.lower() not in Image.registered_extensions():
        raise ConfigError("show_input", f"{out}: give an image file name such as input.png")
    if len(paths) == 1:
        result = [target]
    else:
        taken: dict[str, int] = {}
        result = []
        for path in paths:
            n = taken[path.stem] = taken.get(path.stem, 0) + 1
            suffix = f"-{n}" if n > 1 else ""
            result.append(target.with_name(f"{target.stem}-{path.stem}{suffix}{target.suffix}"))
    clash = {p.resolve() for p in paths} & {p.resolve() for p in result}
    if clash:
        raise ConfigError("show_input",
                          f"{out} would overwrite the input {min(clash)}; choose another name")
    return result


def save_input(path: Path, pixels: np.ndarray) -> None:
    image = Image.fromarray(pixels)  # uint8 (28, 28) -> mode "L"
    fmt = Image.registered_extensions()[path.suffix.lower()]
    try:
        atomic_write_with(path, lambda fh: image.save(fh, format=fmt))
    except OSError as err:
        raise ConfigError("show_input", f"{str(path)[:160]}: {err.strerror or err}") from None
