"""The scikit-learn surface every deep clusterer of the package shares.

:class:`BaseDeepClusterer` validates the shared parameters and the input,
builds the network around a backbone for the method's
:class:`~skcohiclust.objectives.Objective`, runs the
:class:`~skcohiclust.training.Trainer` (``fit``, ``partial_fit``,
``warm_start``, checkpoints), and serves ``predict``, ``predict_proba``,
``transform`` and ``score`` on any data; it pickles with its network, and
unpickles a CUDA-fitted model on a machine without CUDA.  A method
(:class:`~skcohiclust.CoHiClust`,
:class:`~skcohiclust.ContrastiveClustering`) adds its own parameters, its
objective, and what its fitted clusters are.
"""

from __future__ import annotations

import copy
import io
import numbers
import warnings
from dataclasses import asdict

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._data import BatchSource, infer_input_spec, input_statistics, map_batches
from ._validation import check_float32_range, seed_from
from .augment import resolve_augmentation
from .callbacks import EarlyStopping
from .checkpoints import checkpoint_lock, run_metadata
from .distributed import local_device, resolve_process_group
from .networks import BACKBONES, build_backbone
from .training import Trainer, TrainingConfig

__all__ = ["BaseDeepClusterer", "shared_parameter_docs", "SHARED_PARAMETERS"]

#: Rows per batch when predicting or transforming: on the CPU every batch is padded to
#: this fixed size, so a sample's outputs never depend on what is predicted with it.
INFERENCE_BATCH_SIZE = {"cpu": 64, "cuda": 1024}

#: The numpydoc entries of the parameters every deep clusterer has, filled into their
#: docstrings by :func:`shared_parameter_docs` (each entry ends without a newline).
SHARED_PARAMETERS = {
    "backbone": """backbone : str or torch.nn.Module, default="auto"
        ``"auto"`` (``"cnn"`` for images, ``"mlp"`` for vectors), ``"cnn"``
        (a small VGG-style CNN), ``"mlp"``, ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"`` (untrained torchvision ResNets with a 3x3 stride-1
        stem and no max-pool), or your own module mapping a batch of inputs
        to ``(n, features)`` (copied at fit, never changed).""",
    "backbone_params": """backbone_params : dict or None, default=None
        Settings of the built-in backbone: for ``"cnn"``, ``{"width": w}``
        (channels of its first stage; the stages have ``w, 2w, 4w``;
        default 24), ``{"stages": k}`` (2 to 5 stages, each after the first
        halving the side and doubling the channels; default 3) and
        ``{"input_size": s}`` (the side of the square the
        images are resized to and the views drawn at; by default each side
        is brought into [16, 24], which on a CPU buys about twice the epochs of
        32x32 in the same time); for ``"mlp"``, ``{"hidden": h}`` (default
        256).""",
    "image_shape": """image_shape : tuple of int or None, default=None
        ``(C, H, W)`` or ``(H, W)``: read the rows of a 2-D ``X`` as images.""",
    "max_epochs": """max_epochs : int, default=100
        Passes over the data.""",
    "batch_size": """batch_size : int, default=128
        Samples per batch (each gives two views).  Smaller data sets use one
        batch of all samples.""",
    "lr": """lr : float, default=1e-3
        Adam's learning rate.""",
    "weight_decay": """weight_decay : float, default=1e-6
        Adam's weight decay.""",
    "projection_dim": """projection_dim : int, default=128
        Output size of the projection head.""",
    "augmentation": """augmentation : "auto", str, dict or augmentation object, default="auto"
        How views are drawn.  ``"auto"`` is ``"natural"`` (SimCLR's crops,
        flips and colour) for colour images, ``"shapes"`` (small rotations,
        shear, shifts, brightness and contrast jitter, noise) for other
        images and Gaussian noise for vectors.  A dict overrides fields of
        the automatic choice, e.g. ``{"flip": True}``; see
        :class:`~skcohiclust.augment.ImageAugmentation` and
        :class:`~skcohiclust.augment.VectorAugmentation`.""",
    "device": """device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when it is available, else the CPU.""",
    "distributed": """distributed : bool or "auto", default="auto"
        Data-parallel training on :mod:`torch.distributed`, one process per
        device, as started by ``torchrun --nproc_per_node=N script.py``
        (every process runs the same script on the same data).  ``"auto"``
        trains data-parallel when a process group of more than one process
        is initialised or ``torchrun``'s environment says so
        (``WORLD_SIZE > 1``), starting the group (``nccl`` on CUDA, ``gloo``
        on the CPU) if needed; ``True`` requires it; ``False`` never.  The
        processes share every batch of ``batch_size`` samples (parts that
        differ by at most one sample), and the result equals a
        single-process fit up to floating-point rounding; CUDA devices
        without an index become ``cuda:LOCAL_RANK``.  Rank 0 alone writes
        checkpoints and shows progress; every process ends with the same
        fitted model.  See the guide ``docs/distributed.md``.""",
    "mixed_precision": """mixed_precision : bool, default=True
        bfloat16 autocast for the training steps where the device runs
        bfloat16 natively: CUDA GPUs, and CPUs with AVX512-BF16 or AMX
        (with the built-in CNN and ResNets, whose convolutions also run
        channels-last, training steps are then about twice as fast on such
        a CPU; see benchmarks/BENCHMARKS.md).  Ignored elsewhere.  The losses
        and prediction are always computed in float32.""",
    "random_state": """random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and augmentation.  With an int, CPU
        runs are repeatable.""",
    "verbose": """verbose : int, default=0
        0 prints nothing; 1 shows a progress bar per epoch.""",
    "callbacks": """callbacks : list or None, default=None
        Objects with ``on_epoch_end(history, network)`` or callables
        ``f(history)``; returning True stops training.  See
        :mod:`skcohiclust.callbacks`.""",
    "checkpoint_dir": """checkpoint_dir : str, path or None, default=None
        Write a checkpoint (network, optimiser, random states, the method's
        training state, history) there every ``checkpoint_every`` epochs
        and at the end, and resume from it when ``fit`` starts from
        scratch.  A checkpoint of a finished run is loaded without training
        further; one written by another method, for other parameters or on
        other data is refused with a ValueError.  Used by ``fit`` from
        scratch only (not by a warm start or ``partial_fit``).  See the
        guide ``docs/long_runs.md``.""",
    "checkpoint_every": """checkpoint_every : int, default=1
        Epochs between checkpoints.""",
    "warm_start": """warm_start : bool, default=False
        When True and the model is fitted, ``fit`` trains ``max_epochs``
        more epochs from where training stood (network, optimiser, random
        generators, the method's state), instead of starting afresh.  The
        epoch count, and with it the warm-up and any schedule, carries on.""",
    "early_stopping": """early_stopping : int or None, default=None
        Patience: stop when the loss has not improved for this many epochs
        of the phase after the warm-up (see
        :class:`~skcohiclust.callbacks.EarlyStopping`).  ``None`` trains all
        ``max_epochs``.""",
}


def shared_parameter_docs(cls):
    """Class decorator: fill the ``%(name)s`` placeholders of a docstring from :data:`SHARED_PARAMETERS`.

    The decorated class ``cls`` has a docstring that holds placeholders,
    each alone on a line indented like a parameter (a literal ``%`` is
    written ``%%``).

    Returns
    -------
    type
        ``cls``, its docstring filled in.
    """
    cls.__doc__ = cls.__doc__ % SHARED_PARAMETERS
    return cls


class BaseDeepClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Base class of the deep clusterers: not for direct use.

    A subclass sets :attr:`_method` and defines ``__init__`` (every
    parameter, the shared ones included, stored as given), and implements

    * ``_objective(config)``: validate its own parameters and return its
      :class:`~skcohiclust.objectives.Objective`;
    * ``_set_clusters(trainer, source, final)``: the fitted cluster
      attributes (``labels_``, ``n_clusters_``, ...) from the training data;
    * ``_cluster_probabilities(out)``: one batch's ``predict_proba`` rows
      from the network's outputs;

    and may override ``_default_warmup(max_epochs)`` (what
    ``warmup_epochs="auto"`` means; 0), ``_n_neighbors()`` (neighbour
    positives; 0) and ``_refresh_neighbors()`` (epochs between minings of
    them, or ``"auto"``; 0).
    """

    #: The method's name in checkpoints and messages.
    _method = "BaseDeepClusterer"
    #: Whether the method trains data-parallel (see :mod:`skcohiclust.distributed`).
    _supports_distributed = True

    # ------------------------------------------------------------------ subclass hooks
    def _objective(self, config):
        raise NotImplementedError

    def _set_clusters(self, trainer, source, final) -> None:
        raise NotImplementedError

    def _cluster_probabilities(self, out) -> torch.Tensor:
        raise NotImplementedError

    def _default_warmup(self, max_epochs: int) -> int:
        return 0

    def _n_neighbors(self) -> int:
        return 0

    def _refresh_neighbors(self) -> int | str:
        return 0

    def _check_fits_memory(self, n_samples: int, batch_size: int, device: torch.device) -> None:
        """Refuse, before allocating, a model whose own structures cannot fit in memory (none by default)."""

    # ------------------------------------------------------------------ parameters
    def _training_config(self) -> TrainingConfig:
        """Validate the shared parameters into the trainer's settings."""
        _check_int("max_epochs", self.max_epochs, 1)
        if isinstance(self.warmup_epochs, str) and self.warmup_epochs == "auto":
            warmup = self._default_warmup(self.max_epochs)
        else:
            _check_int("warmup_epochs", self.warmup_epochs, 0, self.max_epochs - 1, "(or 'auto')")
            warmup = self.warmup_epochs
        _check_int("batch_size", self.batch_size, 2)
        _check_float("lr", self.lr, positive=True)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}.")
        _check_float("weight_decay", self.weight_decay)
        _check_int("projection_dim", self.projection_dim, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.early_stopping is not None:
            _check_int("early_stopping", self.early_stopping, 1, None, "(the patience in epochs, or None)")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}.")
        if not isinstance(self.mixed_precision, (bool, np.bool_)):
            raise ValueError(f"mixed_precision must be True or False, got {self.mixed_precision!r}.")
        backbone = self.backbone
        if not isinstance(backbone, torch.nn.Module) and backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES} or a torch.nn.Module, got {backbone!r}.")
        return TrainingConfig(
            max_epochs=self.max_epochs,
            warmup_epochs=warmup,
            batch_size=self.batch_size,
            lr=float(self.lr),
            lr_schedule=self.lr_schedule,
            weight_decay=float(self.weight_decay),
            mixed_precision=bool(self.mixed_precision),
            verbose=int(self.verbose),
            checkpoint_every=self.checkpoint_every,
            n_neighbors=self._n_neighbors(),
            refresh_neighbors=self._refresh_neighbors(),
        )

    def _validate_X(self, X, reset: bool, min_samples=None):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64, np.uint8],
            allow_nd=True,
            ensure_min_samples=(2 if reset else 1) if min_samples is None else min_samples,
        )
        if X.ndim > 4:
            raise ValueError(f"X must have 2, 3 or 4 dimensions, got shape {X.shape}.")
        check_float32_range(X)
        if not reset and tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} was fitted on samples "
                f"of shape {self.input_shape_}."
            )
        return X

    # ------------------------------------------------------------------ fitting
    def fit(self, X: ArrayLike, y: object = None) -> BaseDeepClusterer:
        """Train the network on ``X`` and find its clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), (n_samples, H, W) or (n_samples, C, H, W)
            Vectors or images (8-bit 0-255 or float).  Memory-mapped arrays
            are read batch by batch.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        config = self._training_config()
        objective = self._objective(config)
        if self.warm_start and hasattr(self, "module_"):
            _warn_no_checkpoints(self.checkpoint_dir, "a warm-started fit")
            return self._train_more(X, config, objective, config.max_epochs, final=True)
        X = self._validate_X(X, reset=True)
        trainer, source, name, spec = self._new_trainer(X, config, objective, self.checkpoint_dir)
        # one fit at a time writes a checkpoint_dir (in a data-parallel fit: rank 0)
        with checkpoint_lock(self.checkpoint_dir if trainer.is_main else None):
            if not (trainer.resume() and trainer.finished):
                trainer.fit()
        self._end_training(trainer, source, name, spec, final=True)
        return self

    # ---- long runs: partial_fit, warm start (see docs/long_runs.md) ----------------------
    def partial_fit(self, X: ArrayLike, y: object = None) -> BaseDeepClusterer:
        """Train one epoch (one pass) on ``X``, a chunk of the data.

        The first call initialises the model (the input statistics come from
        that chunk); later calls continue training where the previous one
        stopped, on chunks of the same sample shape.  Every call counts as
        one epoch: the warm-up and the method's schedule follow the number
        of calls as they follow epochs in ``fit`` (``max_epochs`` is the
        planned number of calls; more calls are allowed).  After each call
        ``labels_`` holds the clusters of the samples of that chunk, and
        ``predict`` and the other fitted attributes reflect the model as it
        stands (clusters without samples in the chunk are left out of them
        but stay in training).  ``checkpoint_dir`` is not used: pickle the
        estimator to keep its state between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), (n_samples, H, W) or (n_samples, C, H, W)
            A chunk of at least 2 samples.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
        """
        config = self._training_config()
        objective = self._objective(config)
        if hasattr(self, "module_"):
            return self._train_more(X, config, objective, 1, final=False)
        X = self._validate_X(X, reset=True)
        _warn_no_checkpoints(self.checkpoint_dir, "partial_fit")
        trainer, source, name, spec = self._new_trainer(X, config, objective, None)
        trainer.fit(n_epochs=1)
        self._end_training(trainer, source, name, spec, final=False)
        return self

    def _callbacks(self) -> list:
        callbacks = list(self.callbacks or [])
        if self.early_stopping is not None:
            callbacks.append(EarlyStopping(patience=self.early_stopping))
        return callbacks

    def _new_trainer(self, X, config, objective, checkpoint_dir):
        """A trainer with a freshly initialised network, its data source, backbone name and input spec."""
        spec = infer_input_spec(X, self.image_shape)
        augmentation = resolve_augmentation(self.augmentation, spec.is_image, spec.shape[0] if spec.is_image else 1)
        device, group = self._devices(len(X), config)
        seed = seed_from(self.random_state)
        self._check_fits_memory(len(X), config.batch_size, device)
        source = BatchSource(X, spec, device)
        backbone = copy.deepcopy(self.backbone) if isinstance(self.backbone, torch.nn.Module) else self.backbone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = input_statistics(source)
            built = build_backbone(backbone, spec.shape, params=self.backbone_params)
            network = objective.make_network(built, self.projection_dim, mean, std)
        network.to(device)
        metadata = None
        if checkpoint_dir is not None:
            metadata = run_metadata(
                X,
                spec.shape,
                built.name,
                network,
                augmentation,
                {**asdict(config), **objective.settings()},
                self.projection_dim,
                self._method,
                objective.architecture(),
            )
        trainer = Trainer(
            network,
            augmentation,
            source,
            config,
            objective,
            seed,
            callbacks=self._callbacks(),
            checkpoint_dir=checkpoint_dir,
            metadata=metadata,
            group=group,
        )
        return trainer, source, built.name, spec

    def _devices(self, n_samples: int, config: TrainingConfig):
        """This process's device and, for a data-parallel fit, its process group (else None)."""
        device = _resolve_device(self.device)
        group = resolve_process_group(self.distributed, device)
        if group is None:
            return device, None
        if not self._supports_distributed:
            raise ValueError(
                f"{type(self).__name__} does not train data-parallel yet, but this process is one of "
                f"{group.world_size} (distributed={self.distributed!r}); run it in a single process, or pass "
                "distributed=False to train one independent model in every process."
            )
        if min(config.batch_size, n_samples) < group.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} on {n_samples} samples gives batches smaller than the "
                f"{group.world_size} processes of this data-parallel fit: every process needs a sample of every "
                "batch; use a larger batch_size or fewer processes."
            )
        return local_device(device), group

    def _train_more(self, X, config, objective, n_epochs, final):
        """Continue training the fitted model for ``n_epochs`` epochs on ``X``."""
        state = getattr(self, "_training_state", None)
        if state is None:
            raise ValueError(
                f"this fitted {type(self).__name__} has no training state to continue from (it was saved by an "
                "older version); fit it with warm_start=False."
            )
        X = self._validate_X(X, reset=False, min_samples=2)
        fitted = self._fit_params
        asked = {
            **objective.architecture(),
            "projection_dim": self.projection_dim,
            "image_shape": _shape_or_none(self.image_shape),
            "backbone_params": dict(self.backbone_params or {}),
        }
        if isinstance(self.backbone, str) and self.backbone != "auto":
            asked["backbone"] = self.backbone
        changed = [f"{k}={v!r} (fitted with {fitted.get(k, {})!r})" for k, v in asked.items() if fitted.get(k, {}) != v]
        if changed:
            raise ValueError(
                f"cannot continue training with {', '.join(changed)}: warm_start and partial_fit go on with "
                "the fitted network; set warm_start=False (or fit anew) to train a new one."
            )
        spec = self._spec
        augmentation = resolve_augmentation(self.augmentation, spec.is_image, spec.shape[0] if spec.is_image else 1)
        device, group = self._devices(len(X), config)
        network = self.module_.to(device)
        source = BatchSource(X, spec, device)
        trainer = Trainer(network, augmentation, source, config, objective, 0, callbacks=self._callbacks(), group=group)
        trainer.load_training_state(state, self.history_)
        trainer.fit(n_epochs=n_epochs)
        self._end_training(trainer, source, self.backbone_, spec, final=final)
        return self

    def _end_training(self, trainer, source, name, spec, final):
        """Set the fitted attributes from a trainer; ``final``: the end of a ``fit``, not of a ``partial_fit`` call."""
        self.module_ = trainer.network
        self.backbone_ = name
        self.augmentation_ = trainer.augmentation
        self.device_ = trainer.device
        self.input_shape_ = spec.row_shape
        self._spec = spec
        self._fit_params = {
            **trainer.objective.architecture(),
            "projection_dim": self.projection_dim,
            "image_shape": _shape_or_none(self.image_shape),
            "backbone": name,
            "backbone_params": dict(self.backbone_params or {}),
        }
        self.history_ = list(trainer.history)
        # the optimiser and generator states, and the method's state as training left it (no data)
        self._training_state = trainer.training_state()
        self._set_clusters(trainer, source, final)

    def _network_outputs(self, source, fn) -> torch.Tensor:
        """``fn(network outputs)`` of every row of ``source``, in evaluation mode, as one CPU tensor."""
        network = self.module_
        network.eval()
        with torch.no_grad():
            (result,) = map_batches(
                lambda x: (fn(network(x, with_projection=False)),), source, *_inference_batching(source.device)
            )
        return torch.from_numpy(result)

    # ------------------------------------------------------------------ inference
    def _infer(self, X, what: str) -> np.ndarray:
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        # values are read on the scale seen at fit (8-bit data was divided by 255 then)
        source = BatchSource(X, self._spec, self.device_)
        network = self.module_
        network.eval()

        def run(x):
            out = network(x, with_projection=False)
            if what == "transform":
                return (out.representation,)
            return (self._cluster_probabilities(out),)

        with torch.no_grad():
            (result,) = map_batches(run, source, *_inference_batching(source.device))
        return result

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Probability of each cluster for every sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.

        Returns
        -------
        ndarray of shape ``(n_samples, n_clusters_)``
            Rows sum to 1; column ``k`` is cluster ``k``.
        """
        return self._infer(X, "proba")

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Cluster of each sample: the most probable one.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.

        Returns
        -------
        ndarray of shape ``(n_samples,)``
            Labels in ``0..n_clusters_-1``.
        """
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The learned representation (backbone output) of each sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.

        Returns
        -------
        ndarray of shape ``(n_samples, representation_dim)``
        """
        return self._infer(X, "transform")

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Mean probability of the assigned cluster (assignment confidence).

        Higher is better: 1 when every sample sits in one cluster with
        certainty, ``1 / n_clusters_`` at worst.  It is not comparable
        across models with different numbers of clusters; compare those
        with an external score such as ``adjusted_rand_score``.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        float
        """
        return float(self.predict_proba(X).max(axis=1).mean())

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        if "module_" in state:
            buffer = io.BytesIO()
            torch.save(state["module_"], buffer)
            state = dict(state, module_=buffer.getvalue())
        return state

    def __setstate__(self, state):
        module = state.get("module_")
        if isinstance(module, bytes):
            device = torch.device(state.get("device_", "cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            state = dict(state, device_=device)
            state["module_"] = torch.load(io.BytesIO(module), map_location=device, weights_only=False)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _shape_or_none(shape):
    return None if shape is None else tuple(int(s) for s in shape)


def _warn_no_checkpoints(checkpoint_dir, what):
    if checkpoint_dir is not None:
        warnings.warn(
            f"checkpoint_dir is used by fit from scratch only; {what} writes no checkpoint (pickle the "
            "estimator to keep its state).",
            UserWarning,
            stacklevel=3,
        )


def _inference_batching(device: torch.device):
    """Batch size and padding for inference on ``device``."""
    if device.type == "cpu":
        return INFERENCE_BATCH_SIZE["cpu"], True
    return INFERENCE_BATCH_SIZE["cuda"], False


def _resolve_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for, but CUDA is not available here; use device='auto' or 'cpu'."
        )
    return resolved


def _check_int(name, value, low=None, high=None, note=""):
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if high is None:
            bounds = f">= {low}"
        else:
            bounds = f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bounds}{(' ' + note) if note else ''}; got {value!r}.")


def _check_float(name, value, positive=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} float; got {value!r}.")
