"""Mixed precision (bfloat16 autocast where the device runs it natively) and channels-last images."""

import numpy as np
import pytest
import torch
from torch import nn

from skcohiclust import CoHiClust
from skcohiclust.networks import build_network
from skcohiclust.training import native_bfloat16

CPU_HELPERS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cpu_bfloat16(monkeypatch, supported):
    for name in CPU_HELPERS:
        monkeypatch.setattr(torch.cpu, name, lambda: supported, raising=False)


@pytest.mark.parametrize("supported", [True, False])
def test_native_bfloat16_on_the_cpu_follows_the_instruction_set(monkeypatch, supported):
    _cpu_bfloat16(monkeypatch, supported)
    assert native_bfloat16(torch.device("cpu")) is supported


def test_native_bfloat16_is_false_when_torch_cannot_tell(monkeypatch):
    for name in CPU_HELPERS:
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert native_bfloat16(torch.device("cpu")) is False
    assert native_bfloat16(torch.device("meta")) is False


def _conv_output_dtypes(model_kwargs, X):
    """Fit one epoch and return the dtypes the first convolution produced in training steps."""
    seen = []
    model = CoHiClust(depth=2, n_clusters=None, max_epochs=1, batch_size=64, random_state=0, **model_kwargs)
    original = nn.Conv2d.forward

    def spy(self, x):
        out = original(self, x)
        if self.training and self.in_channels == 1:
            seen.append(out.dtype)
        return out

    nn.Conv2d.forward = spy
    try:
        model.fit(X)
    finally:
        nn.Conv2d.forward = original
    return model, set(seen)


@pytest.mark.parametrize(
    "mixed_precision, supported, expected",
    [
        (True, True, torch.bfloat16),
        (True, False, torch.float32),
        (False, True, torch.float32),
    ],
)
def test_training_steps_run_in_bfloat16_only_where_native_and_asked(
    monkeypatch, small_digits, mixed_precision, supported, expected
):
    _cpu_bfloat16(monkeypatch, supported)
    X = small_digits[0][:128]
    model, dtypes = _conv_output_dtypes(dict(mixed_precision=mixed_precision), X)
    assert dtypes == {expected}
    # whatever the training ran in, the loss terms are finite and the fitted model's probabilities sum to 1
    assert all(np.isfinite(model.history_[0][k]) for k in ("loss", "instance_loss"))
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_without_native_bfloat16_mixed_precision_changes_nothing(monkeypatch, small_digits):
    _cpu_bfloat16(monkeypatch, False)
    X = small_digits[0][:128]
    params = dict(depth=2, max_epochs=2, batch_size=64, random_state=0)
    a = CoHiClust(mixed_precision=True, **params).fit(X)
    b = CoHiClust(mixed_precision=False, **params).fit(X)
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _network(backbone, shape):
    mean = torch.zeros((shape[0], 1, 1)) if len(shape) == 3 else torch.zeros(shape)
    std = torch.ones_like(mean)
    return build_network(backbone, shape, 2, 16, mean, std)[0]


@pytest.mark.parametrize("backbone", ["cnn", "resnet18"])
def test_built_in_conv_backbones_run_channels_last_with_the_same_outputs(backbone):
    torch.manual_seed(0)
    network = _network(backbone, (3, 16, 16)).eval()
    assert network.channels_last
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)

    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        fast = network(x).representation
        network.channels_last = False
        network.backbone.to(memory_format=torch.contiguous_format)
        assert all(c.weight.is_contiguous() for c in convs)
        plain = network(x).representation
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_vector_and_custom_backbones_keep_their_memory_order():
    assert not _network("mlp", (10,)).channels_last
    custom = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    network = _network(custom, (1, 8, 8))
    assert not network.channels_last
    assert custom[0].weight.is_contiguous()
