"""Callbacks: user code run as training goes, with the power to stop it.

A callback is either an object with an ``on_epoch_end(history, network)``
method (subclass :class:`Callback` for the optional ``on_train_begin`` and
``on_train_end`` hooks too), or a plain callable ``f(history)``.  ``history``
is the list of per-epoch dicts so far (the last one is the epoch just
finished; see ``CoHiClust.history_``).  Returning ``True`` from
``on_epoch_end`` stops training after that epoch; adding keys to
``history[-1]`` records extra per-epoch values.

Callbacks are called in the order given; every one of them sees every
epoch, even when an earlier one asked to stop.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Callback", "EarlyStopping", "notify", "call_hook"]


class Callback:
    """Base class of training callbacks; override the hooks you need."""

    def on_train_begin(self, history: list[dict], network: nn.Module) -> None:
        """Called when a call of ``fit`` or ``partial_fit`` starts training.

        Parameters
        ----------
        history : list of dict
            Epochs finished before (not empty after a resume or a warm start).
        network : torch.nn.Module
            The network being trained.
        """

    def on_epoch_end(self, history: list[dict], network: nn.Module) -> bool | None:
        """Called after each epoch.

        Parameters
        ----------
        history : list of dict
            One dict per finished epoch (see ``CoHiClust.history_``).
        network : torch.nn.Module
            The network being trained.

        Returns
        -------
        bool or None
            ``True`` to stop training.
        """
        return None

    def on_train_end(self, history: list[dict], network: nn.Module) -> None:
        """Called when training stops (after the last epoch, a stop, or Ctrl-C).

        Parameters
        ----------
        history : list of dict
            All finished epochs.
        network : torch.nn.Module
            The trained network.
        """


class EarlyStopping(Callback):
    """Stop when a monitored value has not improved for ``patience`` epochs.

    The value is compared within one training phase only: the warm-up
    (instance loss alone) and the tree phase (instance + tree loss +
    regulariser) have different losses, so the tree phase starts with a
    fresh record.  By default it never stops the warm-up.  It keeps no state
    of its own (everything comes from ``history``), so it behaves the same
    after a resume from a checkpoint; after a warm start it looks back into
    the earlier epochs too.

    Parameters
    ----------
    patience : int, default=10
        Epochs without improvement before stopping.
    monitor : str, default="loss"
        Key of the history entries to watch (lower is better).
    min_delta : float, default=0.0
        An epoch improves on the best value before it when it is lower by
        more than ``min_delta`` (an equal value is no improvement).
    during_warmup : bool, default=False
        Whether it may stop training during the warm-up phase.

    Examples
    --------
    >>> from skcohiclust import CoHiClust, EarlyStopping
    >>> model = CoHiClust(callbacks=[EarlyStopping(patience=5)])
    """

    def __init__(self, patience: int = 10, monitor: str = "loss", min_delta: float = 0.0, during_warmup: bool = False):
        if not isinstance(patience, numbers.Integral) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an int >= 1; got {patience!r}.")
        if not isinstance(min_delta, numbers.Real) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a non-negative float; got {min_delta!r}.")
        self.patience = int(patience)
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.during_warmup = bool(during_warmup)

    def on_epoch_end(self, history: list[dict], network: nn.Module) -> bool:
        """Return True once the last ``patience`` epochs of this phase brought no improvement.

        Parameters
        ----------
        history : list of dict
            The training history so far.
        network : torch.nn.Module
            The network (unused).

        Returns
        -------
        bool
            Whether to stop.
        """
        if not history:
            return False
        phase = history[-1].get("phase")
        if phase == "warmup" and not self.during_warmup:
            return False
        values = [entry[self.monitor] for entry in history if self.monitor in entry and entry.get("phase") == phase]
        if len(values) <= self.patience:
            return False
        best_before = min(values[: -self.patience], default=math.inf)
        # an improvement is a decrease by more than min_delta; an equal value is none
        return min(values[-self.patience :]) >= best_before - self.min_delta

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, monitor={self.monitor!r}, min_delta={self.min_delta}, "
            f"during_warmup={self.during_warmup})"
        )


def notify(callbacks: Iterable, history: list[dict], network: nn.Module) -> bool:
    """Call every callback's ``on_epoch_end``; True if any of them asks to stop.

    Parameters
    ----------
    callbacks : iterable
        Callback objects or callables.
    history : list of dict
        History so far.
    network : torch.nn.Module
        The network being trained.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        If a callback has no ``on_epoch_end`` and is not callable.
    """
    stop = False
    for callback in callbacks:
        if hasattr(callback, "on_epoch_end"):
            result = callback.on_epoch_end(history, network)
        elif callable(callback):
            result = callback(history)
        else:
            raise TypeError(
                f"a callback must have an on_epoch_end method or be callable; got {type(callback).__name__}."
            )
        stop = stop or bool(result)
    return stop


def call_hook(callbacks: Iterable, name: str, history: list[dict], network: nn.Module) -> None:
    """Call ``name`` (``"on_train_begin"`` or ``"on_train_end"``) on the callbacks that have it.

    Parameters
    ----------
    callbacks : iterable
        Callback objects or callables (plain callables have no such hooks).
    name : str
        Hook to call.
    history : list of dict
        History so far.
    network : torch.nn.Module
        The network being trained.
    """
    for callback in callbacks:
        hook = getattr(callback, name, None)
        if hook is not None and callable(hook):
            hook(history, network)
