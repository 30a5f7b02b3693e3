"""From validated arrays to float tensors on the device, one batch at a time.

Arrays stay on the host in their own dtype (8-bit images stay 8-bit) and may
be memory-mapped: only the rows of a batch are read and converted.  On CUDA,
data that fits comfortably is copied to the device once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InputSpec", "infer_input_spec", "BatchSource", "input_statistics", "map_batches"]

#: Largest array (bytes, as stored) copied to a CUDA device in one piece.
DEVICE_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class InputSpec:
    """How rows of the user's array become model inputs.

    Attributes
    ----------
    row_shape : tuple of int
        Shape of one row of the array as given (``X.shape[1:]``).
    shape : tuple of int
        Shape of one model input: ``(C, H, W)`` for images, ``(d,)`` for vectors.
    is_image : bool
        Whether the inputs are images.
    scale : float
        Factor applied on conversion: ``1/255`` for 8-bit arrays, else 1.
    """

    row_shape: tuple
    shape: tuple
    is_image: bool
    scale: float


def infer_input_spec(X: np.ndarray, image_shape=None) -> InputSpec:
    """Decide what kind of input ``X`` holds.

    Parameters
    ----------
    X : numpy.ndarray
        Validated data: ``(n, d)``, ``(n, H, W)`` or ``(n, C, H, W)``.
    image_shape : tuple of int, optional
        ``(C, H, W)`` or ``(H, W)`` to read flat rows of ``(n, d)`` as images.

    Returns
    -------
    InputSpec
    """
    row_shape = tuple(X.shape[1:])
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) or (H, W) of positive ints, got {image_shape!r}.")
        if int(np.prod(shape)) != int(np.prod(row_shape)):
            raise ValueError(
                f"image_shape={tuple(image_shape)} holds {int(np.prod(shape))} values, but each sample of X "
                f"has shape {row_shape} ({int(np.prod(row_shape))} values)."
            )
        return InputSpec(row_shape, shape, True, scale)
    if len(row_shape) == 1:
        return InputSpec(row_shape, row_shape, False, scale)
    if len(row_shape) == 2:
        return InputSpec(row_shape, (1, *row_shape), True, scale)
    if len(row_shape) == 3:
        channels, height, width = row_shape
        if width in (1, 3, 4) and channels > 4 and height > 4:
            raise ValueError(
                f"X has samples of shape {row_shape}: that looks like channels-last images (n, H, W, C) "
                f"with C={width}, but CoHiClust reads 4-D input as (n, C, H, W). Pass "
                "X.transpose(0, 3, 1, 2) (numpy) or X.permute(0, 3, 1, 2) (torch); or, if these really are "
                f"{channels}-channel images {height}x{width} pixels in size, pass image_shape={row_shape} with "
                "X reshaped to (n, -1)."
            )
        return InputSpec(row_shape, row_shape, True, scale)
    raise ValueError(
        f"X must be (n, d) vectors, (n, H, W) or (n, C, H, W) images; got {X.ndim} dimensions, shape {X.shape}."
    )


class BatchSource:
    """Serves rows of an array as float tensors on a device.

    Parameters
    ----------
    X : array-like
        Numpy array or memmap (anything supporting ``X[sorted_indices]``).
    spec : InputSpec
        From :func:`infer_input_spec`.
    device : torch.device
        Where the tensors go.
    """

    def __init__(self, X, spec: InputSpec, device: torch.device):
        self.X = X
        self.spec = spec
        self.device = torch.device(device)
        self._on_device = None
        nbytes = int(np.prod(X.shape)) * X.dtype.itemsize
        if self.device.type == "cuda" and nbytes <= DEVICE_CACHE_BYTES:
            self._on_device = torch.as_tensor(np.ascontiguousarray(X)).to(self.device)

    def __len__(self) -> int:
        return self.X.shape[0]

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as model inputs."""
        if self._on_device is not None:
            return self._convert(self._on_device[start:stop])
        return self._convert(torch.from_numpy(np.array(self.X[start:stop])))

    def take(self, indices: np.ndarray) -> torch.Tensor:
        """The rows at ``indices`` (sorted, for memory-mapped files) as model inputs."""
        if self._on_device is not None:
            return self._convert(self._on_device[torch.as_tensor(indices, device=self.device)])
        return self._convert(torch.from_numpy(np.asarray(self.X[indices])))

    def _convert(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).reshape(-1, *self.spec.shape).float()
        if self.spec.scale != 1.0:
            batch = batch * self.spec.scale
        return batch


def input_statistics(source: BatchSource, max_rows: int = 20000, chunk: int = 4096):
    """Mean and standard deviation for standardising the inputs.

    Per channel for images (shape ``(C, 1, 1)``), per feature for vectors;
    from the first ``max_rows`` rows at most.  Zero deviations become 1.

    Parameters
    ----------
    source : BatchSource
        The training data.
    max_rows : int, default=20000
        How many rows to read at most.
    chunk : int, default=4096
        Rows read at a time.

    Returns
    -------
    mean, std : torch.Tensor
        On the CPU, float32.
    """
    n = min(len(source), max_rows)
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, n, chunk):
        x = source.rows(start, min(start + chunk, n)).double()
        if source.spec.is_image:
            x = x.transpose(0, 1).reshape(x.shape[1], -1).T
        total = total + x.sum(0)
        total_sq = total_sq + (x * x).sum(0)
        count += x.shape[0]
    mean = total / count
    std = torch.sqrt((total_sq / count - mean * mean).clamp_min(0.0))
    std = torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))
    if source.spec.is_image:
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return mean.float().cpu(), std.float().cpu()


def map_batches(fn, source: BatchSource, batch_size: int, pad: bool = False) -> list:
    """Apply ``fn`` to consecutive batches and gather its outputs as numpy arrays.

    Parameters
    ----------
    fn : callable
        Maps a float input tensor to a tuple of tensors (row by row).
    source : BatchSource
        The data.
    batch_size : int
        Rows per batch; memory use stays bounded by it plus the outputs.
    pad : bool, default=False
        Pad the last batch to ``batch_size`` rows (repeating its last row)
        so that every call of ``fn`` sees the same shape.  Multi-threaded
        CPU kernels choose how to split their sums by the shape, so without
        it a row's output can differ in the last bits depending on how many
        rows come with it; with it, a sample gets the same output whatever
        else is predicted alongside.

    Returns
    -------
    list of numpy.ndarray
        One array per output of ``fn``, rows concatenated.
    """
    outputs = None
    n = len(source)
    for start in range(0, n, batch_size):
        batch = source.rows(start, min(start + batch_size, n))
        rows = batch.shape[0]
        if pad and rows < batch_size:
            batch = torch.cat((batch, batch[-1:].expand(batch_size - rows, *batch.shape[1:])))
        result = fn(batch)
        if outputs is None:
            outputs = [np.empty((n, *r.shape[1:]), dtype=np.float32) for r in result]
        for out, r in zip(outputs, result, strict=True):
            out[start : start + rows] = r[:rows].detach().float().cpu().numpy()
    return outputs
