"""Property-based tests of bad input: every outcome is a fitted model, or a clear ValueError/TypeError.

Hypothesis draws tiny inputs (shapes, dtypes, NaN/inf, sparse matrices,
pandas frames, lists, read-only and non-contiguous arrays) and parameter
values (in and out of range, of the wrong type, unknown names, user modules
with the wrong output), and fits a tiny model (at most two epochs, depth at
most 2, a handful of samples).  Whatever the draw, ``fit`` either returns a
fitted model whose predictions are well-formed, or raises a ``ValueError`` or
``TypeError`` whose message names the parameter or the problem; anything
else (an ``IndexError``, a torch ``RuntimeError``, NaN probabilities) fails.
The example counts are bounded so the whole module runs in seconds.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import sparse
from torch import nn

from skcohiclust import CoHiClust
from skcohiclust import _base as base_module
from skcohiclust import _validation as validation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Hypothesis settings: bounded, deterministic (derandomize) and without deadlines (fits vary in time).
BOUNDED = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)

#: A tiny, fast fit: the fuzz is about what is accepted, not about quality.
TINY = dict(depth=1, max_epochs=2, batch_size=8, n_neighbors=0, random_state=0)

#: Words that say what is wrong with X, one of which an error about the input must use.
INPUT_WORDS = (
    "X",
    "sample",
    "feature",
    "dtype",
    "NaN",
    "infinity",
    "sparse",
    "complex",
    "convert",
    "string",
    "dimension",
    "shape",
    "float32",
)


def _check_fitted(model, X_array):
    n = X_array.shape[0]
    assert model.labels_.shape == (n,)
    assert model.labels_.min() >= 0 and model.labels_.max() < model.n_clusters_
    proba = model.predict_proba(X_array)
    assert proba.shape == (n, model.n_clusters_)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert np.all(np.isfinite(model.transform(X_array)))
    assert np.array_equal(model.predict(X_array), proba.argmax(axis=1))


def _fit_or_refuse(model, X, names):
    """Fit; a refusal must be a ValueError or TypeError that uses one of ``names``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.fit(X)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if "backbone module" not in message:  # a user module's own error is quoted after the explanation
            assert not re.search(r"KMeans|tensor a|mat1|select\(\)", message), f"an internal error leaked: {message}"
        assert any(re.search(rf"\b{re.escape(name)}\b", message, re.IGNORECASE) for name in names), (
            f"{type(exc).__name__} does not name the problem ({names}): {message}"
        )
        return None


# ------------------------------------------------------------------------------------------- inputs
DTYPES = ["bool", "int8", "uint8", "int64", "float16", "float32", "float64", "complex64", "object", "str"]
SHAPES = [(0, 3), (1, 3), (2, 1), (3, 3), (6, 4), (5,), (4, 3, 3), (3, 1, 4, 4), (4, 3, 5, 5), (2, 1, 1, 1, 1), ()]
CONTAINERS = ["array", "list", "pandas", "sparse", "read-only", "non-contiguous", "fortran"]
SPECIALS = [None, "nan", "inf", "-inf", "huge", "large"]


def _values(shape, rng):
    return rng.normal(0.0, 2.0, size=shape)


def _make_input(shape, dtype, special, container, seed):
    rng = np.random.default_rng(seed)
    values = _values(shape, rng)
    if special is not None and values.size:
        flat = values.reshape(-1)
        flat[rng.integers(0, flat.size)] = {
            "nan": np.nan,
            "inf": np.inf,
            "-inf": -np.inf,
            "huge": 1e300,  # beyond float32
            "large": 3e38,  # within float32, but its square is not
        }[special]
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype == "bool":
            array = values > 0
        elif dtype in ("int8", "uint8", "int64"):
            array = np.nan_to_num(values * 40, posinf=100, neginf=-100).astype(dtype)
        elif dtype == "str":
            array = values.astype(str)
        elif dtype == "object":
            array = values.astype(object)
        else:
            array = values.astype(dtype)
    if container == "list":
        return array.tolist()
    if container == "pandas":
        return pd.DataFrame(array) if array.ndim == 2 else array
    if container == "sparse":
        sparse_ok = array.dtype.kind in "biu" or array.dtype in (np.float32, np.float64)  # scipy has no float16
        return sparse.csr_matrix(array) if array.ndim == 2 and sparse_ok else array
    if container == "read-only":
        array = np.array(array)
        array.flags.writeable = False
        return array
    if container == "non-contiguous":
        wide = np.repeat(array, 2, axis=-1) if array.ndim >= 2 else np.repeat(array, 2)
        return wide[..., ::2]
    if container == "fortran":
        return np.asfortranarray(array)
    return array


@settings(max_examples=250, **BOUNDED)
# the cases that matter most, always run besides the drawn ones
@example(shape=(6, 4), dtype="float64", special="huge", container="array", seed=0)
@example(shape=(4, 3, 3), dtype="float64", special="huge", container="array", seed=0)
@example(shape=(6, 4), dtype="float32", special="large", container="array", seed=0)
@example(shape=(6, 4), dtype="float16", special="large", container="array", seed=0)
@example(shape=(6, 4), dtype="complex64", special=None, container="array", seed=0)
@example(shape=(6, 4), dtype="object", special=None, container="array", seed=0)
@example(shape=(6, 4), dtype="str", special=None, container="array", seed=0)
@example(shape=(6, 4), dtype="bool", special=None, container="array", seed=0)
@example(shape=(6, 4), dtype="float32", special=None, container="sparse", seed=0)
@example(shape=(6, 4), dtype="float64", special=None, container="pandas", seed=0)
@example(shape=(4, 3, 5, 5), dtype="uint8", special=None, container="read-only", seed=0)
@example(shape=(4, 3, 5, 5), dtype="float32", special=None, container="non-contiguous", seed=0)
@example(shape=(3, 1, 4, 4), dtype="int64", special=None, container="list", seed=0)
@example(shape=(6, 4), dtype="float32", special="nan", container="list", seed=0)
@example(shape=(1, 3), dtype="float32", special=None, container="array", seed=0)
@example(shape=(), dtype="float32", special=None, container="array", seed=0)
@given(
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from(DTYPES),
    special=st.sampled_from(SPECIALS),
    container=st.sampled_from(CONTAINERS),
    seed=st.integers(0, 3),
)
def test_any_input_is_fitted_or_refused_clearly(shape, dtype, special, container, seed):
    X = _make_input(shape, dtype, special, container, seed)
    model = _fit_or_refuse(CoHiClust(**TINY), X, INPUT_WORDS)
    if model is not None:
        X_array = np.asarray(X.toarray() if sparse.issparse(X) else X)
        _check_fitted(model, X_array.astype(np.float32) if X_array.dtype.kind in "bO" else X_array)


# --------------------------------------------------------------------------------------- parameters
class _Module(nn.Module):
    """A user backbone for vectors of 4 features with a configurable output."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        in_features = 3 if kind == "wrong-input" else 4
        self.linear = nn.Linear(in_features, 5)
        if kind == "lying-output-dim":
            self.output_dim = 7

    def forward(self, x):
        h = self.linear(x)
        if self.kind == "3-d":
            return h.unsqueeze(1)
        if self.kind == "1-d":
            return h.sum(dim=1)
        if self.kind == "extra-rows":
            return torch.cat([h, h[:1]])
        if self.kind == "tuple":
            return (h, h)
        if self.kind == "zero-features":
            return h[:, :0]
        return h


MODULE_KINDS = ["fine", "3-d", "1-d", "extra-rows", "tuple", "zero-features", "wrong-input", "lying-output-dim"]

PARAMETERS = {
    "depth": st.sampled_from([-3, 0, 1, 2, 31, 64, 10**6, 2.5, "2", None, True]),
    "n_clusters": st.sampled_from([None, -1, 0, 1, 2, 3, 4, 5, 100, 2.0, "3"]),
    "batch_size": st.sampled_from([0, 1, 2, 3, 12, 13, 1000, -5, 2.5, None]),
    "temperature": st.sampled_from([0.0, -1.0, 1e-3, 0.5, 100.0, float("nan"), float("inf"), "0.5"]),
    "lr": st.sampled_from([0.0, -1e-3, 1e-3, 10.0, float("nan"), float("inf"), None]),
    "backbone": st.sampled_from(["auto", "mlp", "cnn", "resnet18", "nope", 3, None, *MODULE_KINDS]),
    "max_epochs": st.sampled_from([0, 1, 2, -1, 1.5, "2"]),
    "warmup_epochs": st.sampled_from(["auto", 0, 1, 2, 5, -1, "some"]),
    "prune_start": st.sampled_from(["auto", 0, 1, 50, -1, "x"]),
    "n_neighbors": st.sampled_from([0, 1, 5, 11, 12, 100, -1, 2.5]),
    "refresh_neighbors": st.sampled_from([0, 1, 5, "auto", -1, 2.5, None, "never"]),
    "tree_init": st.sampled_from(["kmeans", "bisect", "random", "best", None]),
    "weight_decay": st.sampled_from([0.0, 1e-6, -1.0, float("nan")]),
    "leaf_balance": st.sampled_from([0.0, 1.0, -1.0, float("inf")]),
    "projection_dim": st.sampled_from([1, 8, 0, -2, 8.0]),
    "image_shape": st.sampled_from([None, (1, 2, 2), (2, 2), (4,), (3, 3), (1, -2, -2), "4"]),
    "lr_schedule": st.sampled_from(["constant", "cosine", "linear"]),
    "augmentation": st.sampled_from(["auto", "shapes", "bogus", {"noise": 0.1}, {"nope": 1}, 3]),
    "device": st.sampled_from(["auto", "cpu", "cuda", "tpu", 3]),
    "random_state": st.sampled_from([0, None, -1, 2**40, "seed"]),
    "early_stopping": st.sampled_from([None, 1, 0, -2]),
    "checkpoint_every": st.sampled_from([1, 0, -1]),
    "mixed_precision": st.sampled_from([True, False, "yes"]),
}


@settings(max_examples=300, **BOUNDED)
@given(changed=st.dictionaries(st.sampled_from(sorted(PARAMETERS)), st.none(), min_size=1, max_size=3), data=st.data())
def test_any_parameters_are_fitted_or_refused_naming_the_parameter(changed, data):
    params = dict(TINY)
    for name in changed:
        params[name] = data.draw(PARAMETERS[name], label=name)
    if params.get("backbone") in MODULE_KINDS:
        params["backbone"] = _Module(params["backbone"])
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    model = _fit_or_refuse(CoHiClust(**params), X, sorted(changed))
    if model is not None:
        _check_fitted(model, X)


@pytest.mark.parametrize("kind", [k for k in MODULE_KINDS if k != "fine"])
def test_user_module_with_the_wrong_output_is_refused(kind):
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    with pytest.raises((ValueError, TypeError), match="backbone module"):
        CoHiClust(**dict(TINY, backbone=_Module(kind))).fit(X)


@pytest.mark.parametrize(
    "name, value, outcome",
    [
        ("depth", 0, "depth must be an int in"),
        ("depth", -1, "depth must be an int in"),
        ("depth", 10**6, "depth must be an int in"),
        ("n_clusters", 0, "n_clusters must be an int in"),
        ("n_clusters", 3, "n_clusters must be an int in"),  # depth 1: two leaves
        ("batch_size", 1, "batch_size must be an int"),
        ("batch_size", 13, None),  # more than the 12 samples: one batch of all
        ("temperature", 0.0, "temperature must be a positive float"),
        ("temperature", -0.5, "temperature must be a positive float"),
        ("lr", 0.0, "lr must be a positive float"),
        ("lr", -1e-3, "lr must be a positive float"),
        ("backbone", "vgg", "backbone must be one of"),
    ],
)
def test_the_named_parameter_values(name, value, outcome):
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    model = CoHiClust(**dict(TINY, **{name: value}))
    if outcome is None:
        _check_fitted(model.fit(X), X)
    else:
        with pytest.raises(ValueError, match=outcome):
            model.fit(X)


def test_a_tree_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch):
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    # 2**30 leaves: terabytes of routing weights, refused on any machine
    with pytest.raises(ValueError, match=r"depth=30 makes a tree of 1,073,741,824 leaves, which needs about .* GiB"):
        CoHiClust(depth=30, max_epochs=1).fit(X)
    # with 1 GiB of memory: depth 18 (1.4 GiB estimated) is refused, before anything is built ...
    monkeypatch.setattr(validation, "_device_memory_bytes", lambda device: 2**30)
    monkeypatch.setattr(base_module, "build_backbone", None)  # a TypeError if it were reached
    with pytest.raises(ValueError, match=r"depth=18 .* more than the 1.0 GiB of memory of cpu; choose a smaller depth"):
        CoHiClust(depth=18, max_epochs=1).fit(X)
    monkeypatch.undo()
    # ... and a depth that fits is fitted
    _check_fitted(CoHiClust(depth=8, max_epochs=1, n_neighbors=0, random_state=0).fit(X), X)


class _NaNAfterFirstStep(nn.Module):
    """A user module whose output is NaN in training mode (and finite in eval mode)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 5)

    def forward(self, x):
        h = self.linear(x)
        return h * torch.sqrt(self.linear.weight.sum() - 1e9) if self.training else h  # NaN in training


def test_a_diverged_run_stops_with_a_clear_error():
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"training diverged: the loss of epoch 1 is nan .*Try a lower lr"):
        CoHiClust(**dict(TINY, backbone=_NaNAfterFirstStep())).fit(X)
