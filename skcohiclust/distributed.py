"""Data-parallel training on :mod:`torch.distributed`: the process-group helpers the trainer uses.

A fit started by ``torchrun`` (or in a process group the script set up)
runs one process per device.  Every process holds the whole data set and
the same model; for each batch

* every process draws the batch and both views of *all* its samples, as a
  single process would (same generators, same seed), and keeps its own
  contiguous part (:func:`shard_sizes`);
* the network runs on that part; BatchNorm layers compute their batch
  statistics over the whole batch (:func:`synchronised_batchnorm`);
* the objective's per-sample tensors (the projections NT-Xent compares)
  are gathered from all processes and its sums (the tree's and the
  clusters' batch statistics) are added over them
  (:func:`combine_statistics`), so every process computes the loss of the
  whole batch;
* every process back-propagates into its own samples only, the gradients
  are added over the processes (:func:`all_reduce_gradients`), and every
  process takes the same optimiser step.

The result equals a single-process run with the same ``batch_size`` and
seed up to floating-point rounding (sums taken in another order).  The
objective's batch statistics say how each of their fields combines through
the ``metadata`` of their dataclass fields: ``{"reduce": "gather"}`` for
per-sample rows, ``{"reduce": "count"}`` for a number of samples, and
tensors without it are sums.  See ``docs/distributed.md``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "ProcessGroup",
    "GATHER",
    "COUNT",
    "resolve_process_group",
    "local_device",
    "shard_sizes",
    "gather_rows",
    "all_reduce_sum",
    "combine_statistics",
    "all_reduce_gradients",
    "broadcast_module",
    "broadcast_object",
    "broadcast_tensor",
    "synchronised_batchnorm",
    "SyncBatchNormCPU",
]

#: Field metadata of a per-sample tensor of batch statistics: its rows are gathered from every process.
GATHER = {"reduce": "gather"}
#: Field metadata of a sample count of batch statistics: the counts of every process are added.
COUNT = {"reduce": "count"}


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """The process group a fit trains in, as the trainer sees it (default group of :mod:`torch.distributed`).

    Parameters
    ----------
    rank : int
        This process's rank, ``0..world_size-1``.
    world_size : int
        Number of processes, ``>= 2``.
    """

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0: the process that writes checkpoints and prints."""
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This process's rows of a batch of ``batch`` samples (see :func:`shard_sizes`).

        Parameters
        ----------
        batch : int
            Samples in the whole batch.

        Returns
        -------
        slice
        """
        sizes = shard_sizes(batch, self.world_size)
        start = int(np.sum(sizes[: self.rank]))
        return slice(start, start + int(sizes[self.rank]))

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        dist.barrier()


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def resolve_process_group(distributed: bool | str, device: torch.device) -> ProcessGroup | None:
    """Whether a fit trains data-parallel, joining or starting the default process group.

    ``"auto"`` trains data-parallel when a process group of more than one
    process is initialised, or when ``torchrun``'s environment
    (``WORLD_SIZE > 1``) says so; ``True`` requires one of them; ``False``
    never does.  A group that is not yet initialised is started from the
    environment (``env://``) with the ``nccl`` backend for CUDA devices and
    ``gloo`` otherwise, and destroyed when the interpreter exits.

    Parameters
    ----------
    distributed : bool or "auto"
        The estimator's ``distributed`` parameter.
    device : torch.device
        The device this process trains on.

    Returns
    -------
    ProcessGroup or None
        None for a single-process fit.

    Raises
    ------
    ValueError
        If ``distributed`` is not one of the accepted values, or is True
        with no process group and no ``torchrun`` environment.
    """
    if not (isinstance(distributed, (bool, np.bool_)) or (isinstance(distributed, str) and distributed == "auto")):
        raise ValueError(f"distributed must be 'auto', True or False, got {distributed!r}.")
    if distributed is False or not dist.is_available():
        if distributed is True:
            raise ValueError("distributed=True, but this torch build has no torch.distributed.")
        return None
    initialised = dist.is_initialized()
    world_size = dist.get_world_size() if initialised else _env_world_size()
    if world_size < 2:
        if distributed is True:
            raise ValueError(
                "distributed=True needs several processes: start the script with torchrun (e.g. "
                "`torchrun --standalone --nproc_per_node=2 script.py`) or initialise a process group of "
                f"more than one process first (found world size {world_size})."
            )
        return None
    if not initialised:
        local_device(device)  # NCCL wants this process's GPU chosen first
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
        atexit.register(_destroy_process_group)
    return ProcessGroup(rank=dist.get_rank(), world_size=dist.get_world_size())


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device of this process: a CUDA device without an index becomes ``cuda:LOCAL_RANK``.

    Parameters
    ----------
    device : torch.device
        The resolved ``device`` parameter.

    Returns
    -------
    torch.device
    """
    if device.type != "cuda" or device.index is not None:
        return device
    index = int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def shard_sizes(batch: int, world_size: int) -> np.ndarray:
    """How many samples of a batch each process takes: contiguous parts differing by at most one.

    Parameters
    ----------
    batch : int
        Samples in the whole batch.
    world_size : int
        Number of processes.

    Returns
    -------
    numpy.ndarray of int64
        Length ``world_size``, summing to ``batch``; the first ``batch %
        world_size`` processes take one more.
    """
    sizes = np.full(world_size, batch // world_size, dtype=np.int64)
    sizes[: batch % world_size] += 1
    return sizes


def gather_rows(local: torch.Tensor, sizes: Sequence[int], group: ProcessGroup) -> torch.Tensor:
    """The rows of every process, in rank order; gradients flow into this process's own rows.

    The rows of the other processes are constants here: each process
    back-propagates into its own samples, and :func:`all_reduce_gradients`
    adds the parameter gradients up, which gives the gradient of the loss
    of the whole batch (no collective runs in the backward pass).

    Parameters
    ----------
    local : torch.Tensor
        This process's rows, ``(sizes[rank], ...)``.
    sizes : sequence of int
        Rows of every process (:func:`shard_sizes`); parts may differ by one.
    group : ProcessGroup
        This process's rank and the number of processes.

    Returns
    -------
    torch.Tensor
        ``(sum(sizes), ...)``.
    """
    longest = int(max(sizes))
    padded = local.detach()
    if padded.shape[0] < longest:
        padded = torch.cat((padded, padded.new_zeros((longest - padded.shape[0], *padded.shape[1:]))))
    parts = [torch.empty_like(padded) for _ in range(group.world_size)]
    dist.all_gather(parts, padded.contiguous())
    parts = [part[: int(size)] for part, size in zip(parts, sizes, strict=True)]
    parts[group.rank] = local
    return torch.cat(parts)


def all_reduce_sum(local: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over the processes; the gradient flows into this process's term.

    Parameters
    ----------
    local : torch.Tensor
        This process's term (e.g. a sum over its samples).

    Returns
    -------
    torch.Tensor
        Same shape: the total, with ``d total / d local`` the identity.
    """
    total = local.detach().clone()
    dist.all_reduce(total)
    return local + (total - local.detach())


def combine_statistics(stats, sizes: Sequence[int], group: ProcessGroup):
    """Batch statistics of the whole batch from every process's (see the module docstring).

    Walks the fields of a dataclass (nested dataclasses too): fields marked
    :data:`GATHER` are gathered (:func:`gather_rows`), fields marked
    :data:`COUNT` are replaced by the batch's total (``sum(sizes)``), other
    tensors are summed (:func:`all_reduce_sum`) and other values kept.  All
    the gathered fields travel in one gather and all the sums in one
    all-reduce (per dtype).

    Parameters
    ----------
    stats : dataclass instance
        From :meth:`Objective.batch_statistics <skcohiclust.objectives.Objective.batch_statistics>`
        on this process's samples.
    sizes : sequence of int
        Samples of every process.
    group : ProcessGroup
        This process's rank and the number of processes.

    Returns
    -------
    dataclass instance
        Of the same type.
    """
    leaves = list(_leaves(stats))
    per_sample = [value for how, value in leaves if how == "gather"]
    gathered = _by_dtype(per_sample, lambda parts: _gather_together(parts, sizes, group))
    summed = _by_dtype([v for how, v in leaves if how == "sum"], _sum_together)
    return _rebuild(stats, {"gather": iter(gathered), "sum": iter(summed)}, int(np.sum(sizes)))


def _how(field: dataclasses.Field, value) -> str:
    return field.metadata.get("reduce") or ("sum" if isinstance(value, torch.Tensor) else "keep")


def _leaves(stats) -> Iterator[tuple[str, object]]:
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value)
        else:
            yield _how(field, value), value


def _rebuild(stats, combined: dict, total: int):
    values = {}
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        if dataclasses.is_dataclass(value):
            values[field.name] = _rebuild(value, combined, total)
            continue
        how = _how(field, value)
        values[field.name] = next(combined[how]) if how in combined else total if how == "count" else value
    return dataclasses.replace(stats, **values)


def _by_dtype(tensors: list, combine) -> list:
    """``combine`` applied to the tensors of each dtype together; the results in the tensors' order."""
    results = [None] * len(tensors)
    for dtype in dict.fromkeys(t.dtype for t in tensors):
        where = [i for i, t in enumerate(tensors) if t.dtype == dtype]
        for i, result in zip(where, combine([tensors[i] for i in where]), strict=True):
            results[i] = result
    return results


def _sum_together(tensors: list) -> list:
    total = all_reduce_sum(torch.cat([t.reshape(-1) for t in tensors]))
    return [part.view_as(t) for part, t in zip(total.split([t.numel() for t in tensors]), tensors, strict=True)]


def _gather_together(tensors: list, sizes: Sequence[int], group: ProcessGroup) -> list:
    rows = [t.reshape(t.shape[0], -1) for t in tensors]
    every = gather_rows(torch.cat(rows, dim=1), sizes, group)
    parts = every.split([r.shape[1] for r in rows], dim=1)
    return [part.reshape(every.shape[0], *t.shape[1:]) for part, t in zip(parts, tensors, strict=True)]


def all_reduce_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Add every parameter's gradient over the processes, in place, in one flat buffer.

    Parameters without a gradient (not used by this step's loss: the same
    on every process) are left without one, as a single process leaves them.

    Parameters
    ----------
    parameters : sequence of torch.nn.Parameter
        The network's parameters, in the same order on every process.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s parameters and buffers, in place (one flat buffer per dtype).

    Parameters
    ----------
    module : torch.nn.Module
        The network, of the same architecture on every process.
    src : int, default=0
        The rank whose values every process takes.
    """
    tensors = list(module.parameters()) + list(module.buffers())
    for dtype in sorted({t.dtype for t in tensors}, key=str):
        group = [t for t in tensors if t.dtype == dtype]
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            dist.broadcast(flat, src)
            offset = 0
            for tensor in group:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()


def broadcast_object(value, src: int = 0):
    """Rank ``src``'s value of a picklable object, on every process.

    Parameters
    ----------
    value : object
        This process's value (ignored except on ``src``).
    src : int, default=0
        The rank whose value every process takes.

    Returns
    -------
    object
    """
    box = [value]
    dist.broadcast_object_list(box, src)
    return box[0]


def broadcast_tensor(tensor: torch.Tensor | None, device: torch.device, src: int = 0) -> torch.Tensor | None:
    """Rank ``src``'s tensor (or None) on every process, on ``device``.

    Parameters
    ----------
    tensor : torch.Tensor or None
        This process's value (only its shape and dtype must agree where not None).
    device : torch.device
        Where the collective runs (the process's training device).
    src : int, default=0
        The rank whose tensor every process takes.

    Returns
    -------
    torch.Tensor or None
        On the tensor's own device.
    """
    meta = broadcast_object(None if tensor is None else (tuple(tensor.shape), tensor.dtype, tensor.device), src)
    if meta is None:
        return None
    shape, dtype, home = meta
    work = tensor.to(device) if tensor is not None else torch.empty(shape, dtype=dtype, device=device)
    dist.broadcast(work, src)
    return work.to(home if tensor is None else tensor.device)


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose batch statistics are those of the whole batch of every process, on any device.

    :class:`torch.nn.SyncBatchNorm` runs on GPUs only; this one adds each
    process's per-channel sums over the processes with an all-reduce whose
    backward pass adds the gradients over the processes too (as
    ``torch.distributed.nn.functional.all_reduce`` does, now deprecated),
    so it works with the ``gloo`` backend on CPUs.  In evaluation mode it is
    an ordinary BatchNorm.  Made by
    :func:`synchronised_batchnorm` around an existing BatchNorm's
    parameters and buffers (the same tensors).

    Parameters
    ----------
    num_features : int
        Channels ``C`` of the input ``(n, C, ...)``.
    eps : float, default=1e-5
        Added to the variance.
    momentum : float or None, default=0.1
        Weight of the batch in the running statistics (None: cumulative average).
    affine : bool, default=True
        Whether the layer has a learned scale and shift.
    track_running_stats : bool, default=True
        Whether it keeps running statistics (used in evaluation mode).
    device, dtype : optional
        Of the parameters and buffers.
    bias : bool, default=True
        Whether the learned shift is kept (with ``affine``).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise with the statistics of the whole batch (training) or the running ones (evaluation).

        Parameters
        ----------
        input : torch.Tensor
            ``(n, C, ...)``.

        Returns
        -------
        torch.Tensor
            Same shape and dtype.
        """
        self._check_input_dim(input)
        if not self.training:
            return nn.functional.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        x = input.float()
        dims = [0, *range(2, x.dim())]
        count = x.new_full((1,), x.numel() / x.shape[1])
        # the running mean is the same on every process: sums of squares about it lose fewer digits
        shift = x.new_zeros(x.shape[1]) if self.running_mean is None else self.running_mean.detach().float()
        centred = x - _channels(shift, x.dim())
        sums = _AllReduceSum.apply(torch.cat((centred.sum(dims), (centred * centred).sum(dims), count)))
        channels = x.shape[1]
        n = sums[-1]
        mean_shifted = sums[:channels] / n
        var = (sums[channels : 2 * channels] / n - mean_shifted * mean_shifted).clamp_min(0.0)
        y = (centred - _channels(mean_shifted, x.dim())) * _channels(torch.rsqrt(var + self.eps), x.dim())
        if self.affine:
            y = y * _channels(self.weight, x.dim()) + _channels(self.bias, x.dim())
        self._update_running(shift + mean_shifted.detach(), var.detach(), float(n.detach()))
        return y.to(input.dtype)

    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        if not self.track_running_stats:
            return
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            unbiased = var * (n / max(n - 1.0, 1.0))
            self.running_mean.mul_(1.0 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1.0 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of every process's term is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def _channels(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(1, -1, *([1] * (ndim - 2)))


def _synchronised_copy(module: nn.modules.batchnorm._BatchNorm, device: torch.device) -> nn.Module:
    kind = nn.SyncBatchNorm if device.type == "cuda" else SyncBatchNormCPU
    copy = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    # the very same tensors: the optimiser's parameters, and buffers updated in place
    copy.weight, copy.bias = module.weight, module.bias
    copy.running_mean, copy.running_var = module.running_mean, module.running_var
    copy.num_batches_tracked = module.num_batches_tracked
    copy.train(module.training)
    return copy


@contextlib.contextmanager
def synchronised_batchnorm(network: nn.Module, device: torch.device) -> Iterator[None]:
    """Within the block, the BatchNorm layers of ``network`` use the statistics of the whole batch.

    Every BatchNorm layer is swapped for :class:`torch.nn.SyncBatchNorm`
    (CUDA) or :class:`SyncBatchNormCPU` (other devices) sharing its
    parameters and buffers, and put back on leaving, so the network keeps
    its own classes (it pickles and runs in a single process as before).

    Parameters
    ----------
    network : torch.nn.Module
        The network being trained (changed in place within the block).
    device : torch.device
        The training device.
    """
    swapped = []
    for name, module in list(network.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (nn.SyncBatchNorm, SyncBatchNormCPU)
        ):
            parent_name, _, child = name.rpartition(".")
            parent = network.get_submodule(parent_name)
            swapped.append((parent, child, module))
            setattr(parent, child, _synchronised_copy(module, device))
    try:
        yield
    finally:
        for parent, child, module in swapped:
            module.train(getattr(parent, child).training)
            setattr(parent, child, module)
