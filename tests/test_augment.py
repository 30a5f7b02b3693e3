"""Exact properties of the random views."""

import dataclasses

import pytest
import torch

from skcohiclust.augment import IMAGE_PRESETS, ImageAugmentation, VectorAugmentation, resolve_augmentation


def _images(n=6, channels=1, size=12, seed=0):
    x = torch.rand((n, channels, size, size), generator=torch.Generator().manual_seed(seed))
    return x / x.amax()  # largest value exactly 1


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identity_view_returns_the_images():
    x = _images()
    out = ImageAugmentation(scale=(1.0, 1.0))(x, _gen())
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flip_gives_the_image_or_its_mirror():
    x = _images(n=32)
    out = ImageAugmentation(scale=(1.0, 1.0), flip=True)(x, _gen())
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all())
    assert 0 < int(mirrored.sum()) < 32  # both happen


def test_views_are_scale_equivariant():
    """The same draw on 0-1 data and on 0-16 data differs only by the factor 16 (noise, jitter and clamp included)."""
    x = _images()
    aug = resolve_augmentation("auto", is_image=True, channels=1)
    torch.testing.assert_close(aug(16.0 * x, _gen(3)), 16.0 * aug(x, _gen(3)), atol=1e-4, rtol=1e-5)


def test_grey_views_change_intensity_and_stay_in_range():
    """The automatic grey views jitter brightness and contrast, so intensity statistics no longer identify an image."""
    aug = resolve_augmentation("auto", is_image=True, channels=1)
    assert aug.brightness > 0 and aug.contrast > 0
    colour_only = dataclasses.replace(
        aug, scale=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0.0, shear=0.0, translate=0.0, noise=0.0
    )
    x = _images(n=64)
    a, b = colour_only(x, _gen(1)), colour_only(x, _gen(2))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    gap = (a.mean(dim=(1, 2, 3)) - b.mean(dim=(1, 2, 3))).abs()
    assert float(gap.median()) > 0.02  # two views of one image differ in mean intensity


def test_output_size():
    out = IMAGE_PRESETS["shapes"](_images(size=8), _gen(), output_size=(16, 16))
    assert out.shape == (6, 1, 16, 16)


def test_resolve_augmentation_choices():
    assert resolve_augmentation("auto", True, 1) == IMAGE_PRESETS["shapes"]
    assert resolve_augmentation(None, True, 3) == IMAGE_PRESETS["natural"]
    assert resolve_augmentation({"flip": True}, True, 1) == dataclasses.replace(IMAGE_PRESETS["shapes"], flip=True)
    assert resolve_augmentation("auto", False) == VectorAugmentation()
    assert resolve_augmentation("none", False) == VectorAugmentation(noise=0.0, mask_p=0.0)
    with pytest.raises(ValueError, match="not known"):
        resolve_augmentation("natural", False)
    with pytest.raises(ValueError, match="unknown keys"):
        resolve_augmentation({"brightnes": 0.1}, True, 1)


def test_vector_views():
    x = torch.zeros((2000, 3))
    std = torch.tensor([1.0, 2.0, 0.5])
    mean = torch.tensor([5.0, -1.0, 0.0])
    noisy = VectorAugmentation(noise=0.2)(x, _gen(), mean, std)
    torch.testing.assert_close(noisy.std(dim=0), 0.2 * std, atol=0.02, rtol=0.05)
    masked = VectorAugmentation(noise=0.0, mask_p=1.0)(x, _gen(), mean, std)
    torch.testing.assert_close(masked, mean.expand_as(x))
