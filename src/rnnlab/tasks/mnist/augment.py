"""The robust augmentation of training digits: each image of a batch gets its own random
stroke thickness, rotation, scale, translation and elastic distortion (Simard, Steinkraus
and Platt 2003), so that a model trained on MNIST also reads digits that MNIST's writers
did not draw: people's drawings, printed fonts.

The whole batch is changed at once: strokes thickened or thinned by blending with 3x3
max-pools of the image or of its negative; then one sampling grid per image (the
``affine_grid`` of its rotation, scale and translation, plus a smoothed random
displacement field) and one bilinear ``grid_sample``. Every random number comes from the
generator the batch source passes in, so a seed gives the same batches on every machine.
Training batches only: validation and test images are never changed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.train import Batch
from rnnlab.tasks.mnist.data import NORMALISATION, MnistConfig, normalise, shift_images

Transform = Callable[[Batch, torch.Generator], Batch]  # a batch source's per-batch change
# The elastic field's random values sit every other pixel: the Gaussian smoothing (4 px)
# leaves nothing of finer detail, and per-pixel noise costs four times the random numbers.
NOISE_STRIDE = 2


@dataclass(frozen=True)
class RobustAugment:
    """How far each random change may go; one image draws each from its own range."""

    max_rotation: float = 15.0  # degrees, either way
    min_scale: float = 0.8
    max_scale: float = 1.2
    max_translation: float = 3.0  # pixels, each axis
    # Stroke thickness: MNIST's pens are narrower than most drawings' and bold fonts'. An
    # image is thickened by a random number (not a whole one) of 3x3 dilations up to
    # ``max_dilations``, or thinned by up to half a 3x3 erosion (a whole one wipes out
    # MNIST's two-pixel strokes), or left alone.
    thicker_probability: float = 0.4
    max_dilations: float = 2.0
    thinner_probability: float = 0.15
    # Simard et al.'s elastic field: uniform [-1, 1] displacements smoothed by a Gaussian
    # of ``elastic_sigma`` pixels and scaled by ``elastic_alpha`` pixels. Theirs were 34
    # and 4 (about 1.8 px RMS) with no other change; on top of the affine changes that
    # tangles some digits, so the field is weaker here (about 1.3 px RMS).
    elastic_alpha: float = 24.0
    elastic_sigma: float = 4.0


ROBUST = RobustAugment()  # the ranges the robust recipe trains with


def robust_augment(batch: Batch, generator: torch.Generator, mean: float, std: float,
                   spec: RobustAugment = ROBUST) -> Batch:
    """Every image of a normalised batch (B, 28, 28) thickened or thinned, then warped;
    pixels are changed in [0, 1] (zero is the background) and normalised again."""
    pixels = batch.x * std + mean  # (B, H, W) in [0, 1]
    pixels = change_thickness(pixels, generator, spec)
    grid = affine_grids(pixels.shape, generator, spec)  # (B, H, W, 2)
    grid = grid + elastic_field(pixels.shape, generator, spec.elastic_alpha, spec.elastic_sigma)
    warped = F.grid_sample(pixels[:, None], grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)[:, 0]  # (B, H, W)
    return Batch((warped - mean) / std, batch.y, batch.lengths)


def change_thickness(pixels: Tensor, generator: torch.Generator, spec: RobustAugment) -> Tensor:
    """(B, H, W) in [0, 1]: a share of the images blended towards their dilations
    (thicker), another towards their erosion (thinner), each by its own random amount."""
    choice, amount = torch.rand(2, pixels.shape[0], generator=generator)  # (B,) each
    thicker = choice < spec.thicker_probability
    thinner = ~thicker & (choice < spec.thicker_probability + spec.thinner_probability)
    dilations = (thicker.float() * amount * spec.max_dilations)[:, None, None]  # (B, 1, 1)
    erosion = (thinner.float() * amount / 2)[:, None, None]
    # an image is made thicker or thinner, never both: the other amount is zero
    changed = torch.lerp(pixels, -max_3x3(-pixels), erosion)
    dilated = pixels
    for step in range(math.ceil(spec.max_dilations)):  # the k-th dilation weighs amount - k
        dilated, before = max_3x3(dilated), dilated
        changed = torch.where(dilations > step,
                              torch.lerp(before, dilated, (dilations - step).clamp(max=1)),
                              changed)
    return changed


def max_3x3(pixels: Tensor) -> Tensor:
    """(B, H, W) -> the maximum over each pixel's 3x3 neighbourhood (edges padded with the
    image's minimum), as two separable shifted maxima: max_pool2d with stride 1 on one
    channel is many times slower on the CPU."""
    padded = F.pad(pixels, (1, 1, 1, 1), value=float(pixels.min()))  # (B, H+2, W+2)
    rows = torch.maximum(torch.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return torch.maximum(torch.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def affine_grids(shape: torch.Size, generator: torch.Generator, spec: RobustAugment) -> Tensor:
    """(B, H, W, 2) sampling grids in grid_sample's [-1, 1] coordinates, one random
    rotation, scale and translation per image (the output image is the input seen through
    the inverse map, so the digit turns by the angle and grows by the scale)."""
    b, h, w = shape
    angle, scale, dx, dy = torch.rand(4, b, generator=generator)  # (B,) each, in [0, 1)
    angle = math.radians(spec.max_rotation) * (2 * angle - 1)
    scale = spec.min_scale + (spec.max_scale - spec.min_scale) * scale
    # a translation of t pixels is 2t / side in normalised coordinates
    shift_x = 2 * spec.max_translation * (2 * dx - 1) / w
    shift_y = 2 * spec.max_translation * (2 * dy - 1) / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # what affine_grid computes for theta [[cos, -sin, -shift_x], [sin, cos, -shift_y]],
    # written out elementwise (affine_grid's batched product is slower on the CPU)
    x, y = pixel_centres(h, w).view(h * w, 2).T  # (H*W,) each
    grid_x = cos[:, None] * x - sin[:, None] * y - shift_x[:, None]  # (B, H*W)
    grid_y = sin[:, None] * x + cos[:, None] * y - shift_y[:, None]
    return torch.stack([grid_x, grid_y], dim=-1).view(b, h, w, 2)


def pixel_centres(h: int, w: int) -> Tensor:
    """(H, W, 2) the (x, y) of each pixel's centre in [-1, 1] (align_corners=False)."""
    ys = (2 * torch.arange(h, dtype=torch.float32) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=torch.float32) + 1) / w - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def elastic_field(shape: torch.Size, generator: torch.Generator, alpha: float,
                  sigma: float, stride: int = NOISE_STRIDE) -> Tensor:
    """(B, H, W, 2) smooth random displacements in grid_sample's coordinates: uniform
    [-1, 1] noise on a grid of every ``stride``-th pixel and axis, Gaussian-smoothed,
    times ``alpha`` pixels. The smoothing is one matrix product per axis (zero padding
    outside the image), much faster on the CPU than a convolution with the wide kernel."""
    b, h, w = shape
    # alpha pixels are 2 * alpha / side in normalised coordinates; folded into one of the
    # two smoothing matrices, which needs square images (MNIST's are)
    assert h == w, f"elastic distortion needs square images, got {h}x{w}"
    smooth = gaussian_matrix(w, sigma, stride)  # (W, N)
    n = smooth.shape[1]
    noise = torch.empty(b, 2, n, n).uniform_(-1, 1, generator=generator)  # (B, 2, N, N)
    along_x = noise.view(-1, n) @ smooth.T  # (B*2*N, W)
    scaled = (2 * alpha / h) * smooth
    along_y = along_x.view(b, 2, n, w).transpose(2, 3).reshape(-1, n) @ scaled.T  # (B*2*W, H)
    return along_y.view(b, 2, w, h).permute(0, 3, 2, 1)  # (B, H, W, 2): (x, y) displacements


def gaussian_matrix(size: int, sigma: float, stride: int = 1) -> Tensor:
    """(size, N): row i holds pixel i's Gaussian weights (cut at 3 sigma) of N noise
    values placed every ``stride`` pixels, so ``matrix @ values`` smooths them along one
    axis. The weights are those of noise at every pixel (summing to one) times
    sqrt(stride), so the smoothed field is as strong as per-pixel noise would make it."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    total = torch.exp(-offsets ** 2 / (2 * sigma ** 2)).sum()  # per-pixel noise's normaliser
    points = torch.arange(0, size, stride, dtype=torch.float32) + (stride - 1) / 2  # (N,)
    distance = torch.arange(size, dtype=torch.float32)[:, None] - points[None, :]  # (size, N)
    weights = torch.exp(-distance ** 2 / (2 * sigma ** 2)) * math.sqrt(stride) / total
    return torch.where(distance.abs() <= radius, weights, 0.0)


def training_transform(config: MnistConfig) -> Transform | None:
    """What is done to every training batch, in order: the random shift, then the robust
    augmentation, each where the config asks for it (None: the batches as they are)."""
    steps: list[Transform] = []
    if config.augment_shift:
        background = float(normalise(torch.zeros(1, dtype=torch.uint8), config.dataset))
        steps.append(functools.partial(shift_images, max_shift=config.augment_shift,
                                       background=background))
    if config.augment == "robust":
        mean, std = NORMALISATION[config.dataset]
        steps.append(functools.partial(robust_augment, mean=mean, std=std))
    if not steps:
        return None

    def transform(batch: Batch, generator: torch.Generator) -> Batch:
        for step in steps:
            batch = step(batch, generator)
        return batch

    return transform
