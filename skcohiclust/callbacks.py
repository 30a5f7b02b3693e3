"""Callbacks notified at the end of every training epoch.

A callback is an object with an ``on_epoch_end(history, network)`` method, or
a plain callable ``f(history)``.  ``history`` is the list of per-epoch dicts
so far (the last one is the epoch just finished).  Returning ``True`` stops
training after that epoch.
"""

from __future__ import annotations

import math

__all__ = ["Callback", "EarlyStopping", "notify"]


class Callback:
    """Base class of training callbacks; override :meth:`on_epoch_end`."""

    def on_epoch_end(self, history, network):
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


class EarlyStopping(Callback):
    """Stop when a monitored value has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int, default=10
        Epochs without improvement before stopping.
    monitor : str, default="loss"
        Key of the history entries to watch (lower is better).
    min_delta : float, default=0.0
        Smallest decrease that counts as an improvement.
    """

    def __init__(self, patience: int = 10, monitor: str = "loss", min_delta: float = 0.0):
        self.patience = patience
        self.monitor = monitor
        self.min_delta = min_delta

    def on_epoch_end(self, history, network):
        """Return True once the last ``patience`` epochs brought no improvement."""
        values = [entry[self.monitor] for entry in history if self.monitor in entry]
        if len(values) <= self.patience:
            return False
        best_before = min(values[: -self.patience], default=math.inf)
        return min(values[-self.patience :]) > best_before - self.min_delta


def notify(callbacks, history, network) -> bool:
    """Call every callback; True if any of them asks to stop.

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
    """
    stop = False
    for callback in callbacks:
        if hasattr(callback, "on_epoch_end"):
            result = callback.on_epoch_end(history, network)
        elif callable(callback):
            result = callback(history)
        else:
            raise TypeError(f"a callback must have on_epoch_end or be callable; got {type(callback).__name__}.")
        stop = stop or bool(result)
    return stop
