"""The robust augmentation of MNIST's training digits (rnnlab.tasks.mnist.augment): each
piece against a torch reference, the whole deterministic given the seed, and the setting
kept out of the records of runs that do not use it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rnnlab.cli import main
from rnnlab.core.errors import ConfigError
from rnnlab.core.records import RunRecord
from rnnlab.core.train import Batch, ShuffledBatches, TensorDataset
from rnnlab.tasks.mnist import MnistTask, study
from rnnlab.tasks.mnist.augment import (
    ROBUST,
    RobustAugment,
    affine_grids,
    change_thickness,
    elastic_field,
    max_3x3,
    robust_augment,
    training_transform,
)
from rnnlab.tasks.mnist.data import NORMALISATION, MnistConfig, normalise, shift_images
from rnnlab.tasks.pixel_mnist.data import PixelMnistConfig

torch.set_num_threads(1)
MEAN, STD = NORMALISATION["mnist"]
UNCHANGED = RobustAugment(max_rotation=0.0, min_scale=1.0, max_scale=1.0, max_translation=0.0,
                          thicker_probability=0.0, thinner_probability=0.0, elastic_alpha=0.0)


def digits(n: int = 16, seed: int = 0) -> Batch:
    """Normalised (n, 28, 28) images of random bars on a black background."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):
        top, left = torch.randint(4, 14, (2,), generator=generator).tolist()
        pixels[i, top : top + 10, left : left + 3] = 255
        pixels[i, top + 8 : top + 10, left : left + 8] = 200
    return Batch(normalise(pixels, "mnist"), torch.arange(n) % 10, None)


def augmented(batch: Batch, seed: int, spec: RobustAugment = ROBUST) -> Batch:
    return robust_augment(batch, torch.Generator().manual_seed(seed), MEAN, STD, spec)


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    batch = digits()
    first, again, other = augmented(batch, 7), augmented(batch, 7), augmented(batch, 8)
    assert torch.equal(first.x, again.x)
    assert not torch.allclose(first.x, other.x)
    assert first.x.shape == batch.x.shape and first.x.dtype == torch.float32
    assert torch.equal(first.y, batch.y) and first.lengths is None
    assert not torch.allclose(first.x, batch.x)  # it did change the images


def test_every_change_at_zero_leaves_the_images_as_they_were():
    batch = digits()
    assert torch.allclose(augmented(batch, 3, UNCHANGED).x, batch.x, atol=1e-5)


def test_images_stay_in_range_and_a_blank_image_stays_blank():
    batch = digits()
    blank = normalise(torch.zeros(1, 28, 28, dtype=torch.uint8), "mnist")
    x = torch.cat([batch.x, blank])
    out = augmented(Batch(x, torch.zeros(len(x), dtype=torch.long), None), 5).x * STD + MEAN
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5
    assert out[-1].abs().max() < 1e-5


def test_affine_grids_match_affine_grid():
    spec = RobustAugment()
    ours = affine_grids(torch.Size([8, 28, 28]), torch.Generator().manual_seed(1), spec)
    angle, scale, dx, dy = torch.rand(4, 8, generator=torch.Generator().manual_seed(1))
    angle = math.radians(spec.max_rotation) * (2 * angle - 1)
    scale = spec.min_scale + (spec.max_scale - spec.min_scale) * scale
    shift_x, shift_y = (2 * spec.max_translation * (2 * d - 1) / 28 for d in (dx, dy))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, -shift_x], dim=-1),
                         torch.stack([sin, cos, -shift_y], dim=-1)], dim=1)
    reference = F.affine_grid(theta, [8, 1, 28, 28], align_corners=False)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_a_rotation_turns_the_digit_by_its_angle():
    """A horizontal bar: after the warp its ink's slope (y down) is -tan(angle), the angle
    drawn for its image."""
    pixels = torch.zeros(6, 28, 28)
    pixels[:, 13:15, 4:24] = 1.0
    spec = RobustAugment(max_rotation=15.0, min_scale=1.0, max_scale=1.0, max_translation=0.0)
    grid = affine_grids(pixels.shape, torch.Generator().manual_seed(0), spec)
    turned = F.grid_sample(pixels[:, None], grid, align_corners=False)[:, 0]  # (6, 28, 28)
    draws = torch.rand(4, 6, generator=torch.Generator().manual_seed(0))[0]
    angles = math.radians(15.0) * (2 * draws - 1)  # (6,)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    weights = turned / turned.sum(dim=(1, 2), keepdim=True)
    dx = xs - (weights * xs).sum(dim=(1, 2), keepdim=True)
    dy = ys - (weights * ys).sum(dim=(1, 2), keepdim=True)
    slopes = (weights * dx * dy).sum(dim=(1, 2)) / (weights * dx ** 2).sum(dim=(1, 2))
    assert angles.abs().max() > math.radians(5)  # some real turns among them
    assert torch.allclose(torch.atan(slopes), -angles, atol=math.radians(1))


def test_elastic_field_is_simards_gaussian_smoothing_of_uniform_noise():
    """With noise at every pixel, the field is conv2d with a Gaussian of the noise."""
    sigma, alpha = 4.0, 24.0
    ours = elastic_field(torch.Size([3, 28, 28]), torch.Generator().manual_seed(2), alpha,
                         sigma, stride=1)
    noise = torch.empty(3, 2, 28, 28).uniform_(-1, 1, generator=torch.Generator().manual_seed(2))
    radius = math.ceil(3 * sigma)
    kernel = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(noise.view(6, 1, 28, 28), kernel.view(1, 1, 1, -1), padding=(0, radius))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    reference = alpha * (2 / 28) * smooth.view(3, 2, 28, 28).permute(0, 2, 3, 1)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_coarse_noise_gives_a_field_as_strong_as_per_pixel_noise():
    shape = torch.Size([1000, 28, 28])
    rms = [elastic_field(shape, torch.Generator().manual_seed(4), 24.0, 4.0, stride)
           .pow(2).sum(-1).mean().sqrt().item() for stride in (1, 2)]
    assert rms[1] == pytest.approx(rms[0], rel=0.05)
    assert 14 * rms[0] == pytest.approx(1.3, abs=0.15)  # pixels: the strength the docs name


def test_max_3x3_is_a_3x3_max_pool():
    pixels = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(0))
    reference = F.max_pool2d(pixels[:, None], 3, stride=1, padding=1)[:, 0]
    assert torch.equal(max_3x3(pixels), reference)


def test_thickness_thickens_some_thins_some_and_leaves_the_rest():
    pixels = digits(64).x * STD + MEAN
    changed = change_thickness(pixels, torch.Generator().manual_seed(0), ROBUST)
    ink_before, ink_after = pixels.sum(dim=(1, 2)), changed.sum(dim=(1, 2))
    thicker = (ink_after > ink_before + 1e-3).sum()
    thinner = (ink_after < ink_before - 1e-3).sum()
    same = (ink_after - ink_before).abs().lt(1e-4).sum()
    assert thicker > 12 and thinner > 2 and same > 15 and thicker + thinner + same == 64
    unchanged = change_thickness(pixels, torch.Generator(), UNCHANGED)
    assert torch.equal(unchanged, pixels)


def test_thickening_goes_from_one_dilation_to_two():
    """An amount a in [0, 1] blends the image with one 3x3 max-pool, a in [1, 2] one
    max-pool with two."""
    pixels = digits(3).x * STD + MEAN
    once = F.max_pool2d(pixels[:, None], 3, stride=1, padding=1)
    twice = F.max_pool2d(once, 3, stride=1, padding=1)[:, 0]
    once = once[:, 0]
    spec = RobustAugment(thicker_probability=1.0, max_dilations=2.0)
    amounts = torch.rand(2, 3, generator=torch.Generator().manual_seed(1))[1]
    changed = change_thickness(pixels, torch.Generator().manual_seed(1), spec)
    assert min(2 * amounts) < 1 < max(2 * amounts)  # both stretches are checked
    for image, amount in enumerate((2 * amounts).tolist()):
        low, high = (pixels, once) if amount <= 1 else (once, twice)
        expected = torch.lerp(low[image], high[image], amount - (amount > 1))
        assert torch.allclose(changed[image], expected, atol=1e-6), amount


def test_a_config_without_augmentation_makes_no_transform_and_shift_is_unchanged():
    assert training_transform(MnistConfig()) is None
    batch = digits()
    background = float(normalise(torch.zeros(1, dtype=torch.uint8), "mnist"))
    shifted = training_transform(MnistConfig(augment_shift=2))(
        batch, torch.Generator().manual_seed(9))
    assert torch.equal(shifted.x, shift_images(batch, torch.Generator().manual_seed(9), 2,
                                               background).x)
    robust = training_transform(MnistConfig(augment="robust"))(
        batch, torch.Generator().manual_seed(9))
    assert torch.equal(robust.x, augmented(batch, 9).x)


def test_robust_training_batches_repeat_for_a_seed():
    data = TensorDataset(digits(40).x, torch.arange(40) % 10)
    transform = training_transform(MnistConfig(augment="robust"))
    first, again = (list(ShuffledBatches(data, 16, 5, transform).epoch_batches(2))
                    for _ in range(2))
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
               for a, b in zip(first, again, strict=True))


def test_the_setting_is_recorded_only_when_used():
    assert "augment" not in MnistConfig().to_dict()
    assert MnistTask(MnistConfig(augment="robust")).config_dict()["augment"] == "robust"
    old = {"dataset": "mnist", "num_valid": 10000, "augment_shift": 2, "limit": None}
    assert MnistTask.from_dict(old).config.augment == "none"
    assert MnistTask.from_dict(old).config_dict() == old
    with pytest.raises(ConfigError, match="augment"):
        MnistConfig(augment="everything")
    with pytest.raises(ConfigError, match="augment"):
        PixelMnistConfig(augment="robust")


def test_train_with_the_robust_augmentation_from_the_command_line(fake_mnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "mnist", "--dry-run", "--augment", "robust", "--hidden", "16",
                 "--out", str(out), "--quiet", "--no-figures", "--threads", "1"]) == 0
    record = RunRecord.open(out)
    assert record.config()["task_config"]["augment"] == "robust" and record.is_complete


def test_the_tuned_profile_has_the_robust_recipe_beside_the_tuned_lstm():
    experiments = {e.name: e for e in study.experiments("tuned", (5, 6), False)}
    robust, lstm = experiments["lstm-robust"], experiments["lstm"]
    assert robust.task_config == {**lstm.task_config, "augment_shift": 0, "augment": "robust"}
    assert robust.model == lstm.model and robust.seeds == (5, 6)
    assert robust.train == replace(lstm.train, epochs=study.ROBUST_EPOCHS)
    assert robust.target == 99.0 and robust.reference is None and robust.profile == "tuned"
    assert "lstm-robust" not in {e.name for e in study.experiments("reference", (5,), True)}
