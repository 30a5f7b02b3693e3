"""Batched augmentations that run on the device with per-sample randomness.

Images get one affine warp per sample (crop/scale, aspect, rotation, shear,
translation and flip in one ``grid_sample``), then colour changes; vectors
get Gaussian noise and feature masking.  Every random draw comes from an
explicit ``torch.Generator``, so runs are repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

__all__ = [
    "ImageAugmentation",
    "VectorAugmentation",
    "IMAGE_PRESETS",
    "resolve_augmentation",
]


def _uniform(n, low, high, generator, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


@dataclass(frozen=True)
class ImageAugmentation:
    """Random views of images: an affine warp, then colour.

    Parameters
    ----------
    scale : tuple of float, default=(0.9, 1.1)
        Range of the side of the sampled window relative to the image
        (``< 1`` zooms in, as RandomResizedCrop does; ``> 1`` zooms out).
    ratio : tuple of float, default=(1.0, 1.0)
        Range of the window's aspect ratio (log-uniform).
    rotation : float, default=0.0
        Maximum rotation, in degrees.
    shear : float, default=0.0
        Maximum shear, in degrees.
    translate : float, default=0.0
        Maximum shift as a fraction of the image; windows smaller than the
        image may move anywhere inside it as well.
    flip : bool, default=False
        Horizontal flip with probability 0.5.
    brightness, contrast, saturation, hue : float, default=0.0
        Colour jitter strengths, as torchvision's ``ColorJitter``.
    jitter_p : float, default=0.8
        Probability of applying the colour jitter to a sample.
    grayscale_p : float, default=0.0
        Probability of turning a colour sample grey.
    noise : float, default=0.0
        Standard deviation of added Gaussian noise, relative to each image's
        largest absolute value (so it means the same for 0-1, 0-16 or 0-255 data).
    padding_mode : {"zeros", "border", "reflection"}, default="zeros"
        What lies outside the image when the warp reaches past it.
    """

    scale: tuple = (0.9, 1.1)
    ratio: tuple = (1.0, 1.0)
    rotation: float = 0.0
    shear: float = 0.0
    translate: float = 0.0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    noise: float = 0.0
    padding_mode: str = "zeros"

    def affine_matrices(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        """Per-sample affine matrices mapping output to input coordinates.

        Parameters
        ----------
        n : int
            Samples.
        generator : torch.Generator
            Source of randomness (on ``device``).
        device : torch.device
            Where the matrices are made.

        Returns
        -------
        torch.Tensor
            Shape ``(n, 2, 3)``.
        """
        side = _uniform(n, self.scale[0], self.scale[1], generator, device)
        log_ratio = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), generator, device)
        aspect = torch.exp(log_ratio / 2)
        sx, sy = side * aspect, side / aspect
        if self.flip:
            flip = torch.rand(n, generator=generator, device=device) < 0.5
            sx = torch.where(flip, -sx, sx)
        angle = torch.deg2rad(_uniform(n, -self.rotation, self.rotation, generator, device))
        shear = torch.tan(torch.deg2rad(_uniform(n, -self.shear, self.shear, generator, device)))
        cos, sin = torch.cos(angle), torch.sin(angle)
        # linear part: rotation @ shear @ diag(sx, sy)
        a00 = cos * sx
        a01 = (cos * shear - sin) * sy
        a10 = sin * sx
        a11 = (sin * shear + cos) * sy
        reach = self.translate + (1.0 - side).clamp_min(0.0)
        tx = (2 * torch.rand(n, generator=generator, device=device) - 1) * reach
        ty = (2 * torch.rand(n, generator=generator, device=device) - 1) * reach
        return torch.stack((torch.stack((a00, a01, tx), 1), torch.stack((a10, a11, ty), 1)), 1)

    def colour(self, x: torch.Tensor, generator: torch.Generator, high=None) -> torch.Tensor:
        """Apply brightness, contrast, saturation, hue, grey and noise to ``(n, C, H, W)``.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(n, C, H, W)``.
        generator : torch.Generator
            Source of randomness (on ``x``'s device).
        high : float or None, default=None
            The ceiling that colour changes keep values under; by default
            the batch's largest value, at least 1 (so ``[0, 1]`` for 8-bit
            data).

        Returns
        -------
        torch.Tensor
            The changed images, same shape.
        """
        n, channels = x.shape[:2]
        device = x.device
        if high is None:
            high = _value_ceiling(x)
        jitter = (torch.rand(n, 1, 1, 1, generator=generator, device=device) < self.jitter_p).to(x.dtype)

        def factor(strength):
            f = _uniform(n, max(0.0, 1 - strength), 1 + strength, generator, device).view(n, 1, 1, 1)
            return 1 + jitter * (f - 1)

        if self.brightness > 0:
            x = x * factor(self.brightness)
        if self.contrast > 0:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = mean + (x - mean) * factor(self.contrast)
        if channels == 3 and self.saturation > 0:
            grey = _grey(x)
            x = grey + (x - grey) * factor(self.saturation)
        if channels == 3 and self.hue > 0:
            angle = _uniform(n, -self.hue, self.hue, generator, device) * 2 * math.pi
            x = x + jitter * (_rotate_hue(x, angle) - x)
        if channels == 3 and self.grayscale_p > 0:
            grey_now = (torch.rand(n, 1, 1, 1, generator=generator, device=device) < self.grayscale_p).to(x.dtype)
            x = x + grey_now * (_grey(x).expand_as(x) - x)
        if self.noise > 0:
            peak = x.abs().amax(dim=(1, 2, 3), keepdim=True)
            x = x + self.noise * peak * torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        return (
            x.clamp(min=0.0).minimum(high) if (self.brightness or self.contrast or self.saturation or self.hue) else x
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator, output_size=None) -> torch.Tensor:
        """One random view of every image in the batch.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(n, C, H, W)``, values in ``[0, 1]`` for 8-bit images.
        generator : torch.Generator
            Source of randomness, on ``x``'s device.
        output_size : tuple of int, optional
            ``(H', W')`` of the views (the warp resamples to it); default the
            input size.

        Returns
        -------
        torch.Tensor
            Shape ``(n, C, H', W')``.
        """
        n, channels, height, width = x.shape
        out_h, out_w = output_size if output_size is not None else (height, width)
        high = _value_ceiling(x)  # before the warp, whose interpolation lowers the peaks
        theta = self.affine_matrices(n, generator, x.device).to(x.dtype)
        grid = F.affine_grid(theta, (n, channels, out_h, out_w), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        return self.colour(x, generator, high)


def _value_ceiling(x: torch.Tensor) -> torch.Tensor:
    # the data's range for colour changes: [0, 1] for 8-bit data, [0, max] otherwise
    return x.detach().amax().clamp_min(1.0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return x.mean(dim=1, keepdim=True)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    # rotation of the chroma plane in YIQ space: a cheap, vectorised hue shift
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack((yiq[:, 0], cos * i - sin * q, sin * i + cos * q), dim=1)
    return torch.einsum("ij,njhw->nihw", from_yiq, yiq)


@dataclass(frozen=True)
class VectorAugmentation:
    """Random views of feature vectors: Gaussian noise and feature masking.

    Parameters
    ----------
    noise : float, default=0.2
        Standard deviation of the noise, relative to each feature's standard
        deviation.
    mask_p : float, default=0.0
        Probability of replacing a feature by its mean.
    """

    noise: float = 0.2
    mask_p: float = 0.0

    def __call__(self, x, generator, feature_mean, feature_std) -> torch.Tensor:
        """One random view of every vector of the batch.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(n, d)``.
        generator : torch.Generator
            Source of randomness, on ``x``'s device.
        feature_mean, feature_std : torch.Tensor
            Shape ``(d,)``: the training data's statistics.

        Returns
        -------
        torch.Tensor
        """
        if self.noise > 0:
            x = x + self.noise * feature_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.mask_p > 0:
            drop = torch.rand(x.shape, generator=generator, device=x.device) < self.mask_p
            x = torch.where(drop, feature_mean.to(x.dtype).expand_as(x), x)
        return x


#: Named presets for images.  ``"shapes"`` suits centred strokes and objects
#: (digits, clothes): slight rotations and shear, shifts, mild zoom, brightness
#: and contrast jitter and noise, no flip (chosen on digits and Fashion-MNIST:
#: see benchmarks/BENCHMARKS.md, "Tuning"; without the jitter the network can
#: match the two views of a grey image by their intensity statistics alone;
#: rotations of 20 degrees and shears of 15 gave Fashion-MNIST a worse
#: representation than 5 and 5, and digits no better one).
#: ``"natural"`` is SimCLR's family for photographs.
IMAGE_PRESETS = {
    "shapes": ImageAugmentation(
        scale=(0.6, 1.1),
        ratio=(0.8, 1.25),
        rotation=5.0,
        shear=5.0,
        translate=0.15,
        brightness=0.4,
        contrast=0.4,
        noise=0.1,
    ),
    "natural": ImageAugmentation(
        scale=(math.sqrt(0.2), 1.0),
        ratio=(3 / 4, 4 / 3),
        flip=True,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        jitter_p=0.8,
        grayscale_p=0.2,
        padding_mode="reflection",
    ),
    "none": ImageAugmentation(scale=(1.0, 1.0)),
}


def resolve_augmentation(spec, is_image: bool, channels: int = 1):
    """Turn the estimator's ``augmentation`` parameter into an augmentation object.

    Parameters
    ----------
    spec : None, str, dict, ImageAugmentation or VectorAugmentation
        ``"auto"`` (or None) picks by input kind: ``"natural"`` for 3-channel
        images, ``"shapes"`` for other images, :class:`VectorAugmentation`
        defaults for vectors.  A preset name picks that preset.  A dict
        overrides fields of the automatic choice.  An augmentation object is
        used as it is.
    is_image : bool
        Whether the input is images.
    channels : int, default=1
        Channels of the images.

    Returns
    -------
    ImageAugmentation or VectorAugmentation
    """
    if is_image:
        auto = IMAGE_PRESETS["natural" if channels == 3 else "shapes"]
        kind, names = ImageAugmentation, tuple(IMAGE_PRESETS)
    else:
        auto = VectorAugmentation()
        kind, names = VectorAugmentation, ("none",)
    if spec is None or (isinstance(spec, str) and spec == "auto"):
        return auto
    if isinstance(spec, kind):
        return spec
    if isinstance(spec, str):
        if spec not in names:
            raise ValueError(
                f"augmentation={spec!r} is not known for {'images' if is_image else 'vectors'}; "
                f"use 'auto', one of {names}, a dict of {kind.__name__} fields or a {kind.__name__}."
            )
        return IMAGE_PRESETS[spec] if is_image else VectorAugmentation(noise=0.0, mask_p=0.0)
    if isinstance(spec, dict):
        allowed = {f.name for f in fields(kind)}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"augmentation has unknown keys {unknown}; {kind.__name__} accepts {sorted(allowed)}.")
        return replace(auto, **spec)
    raise ValueError(
        f"augmentation must be 'auto', a preset name, a dict or a {kind.__name__}; got {type(spec).__name__}."
    )
