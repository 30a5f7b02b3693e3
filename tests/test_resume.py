"""Checkpoints: what they hold, when they are written, resuming (also after SIGKILL), refusals."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from skcohiclust import Callback, CoHiClust
from skcohiclust.checkpoints import CHECKPOINT_NAME, read_checkpoint

from ._resume_child import PARAMS, make_data

CHILD = os.path.join(os.path.dirname(__file__), "_resume_child.py")


# one torch thread (see conftest.one_torch_thread): exact comparisons need one fixed count
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def X():
    return make_data()


@pytest.fixture(scope="module")
def uninterrupted(X):
    return CoHiClust(**PARAMS).fit(X)


def _load(directory):
    return read_checkpoint(os.path.join(directory, CHECKPOINT_NAME))


def _assert_same_model(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert np.array_equal(a.labels_, b.labels_)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(a.history_) == strip(b.history_)


class Record(Callback):
    """Records the hooks it sees and, at every epoch end, the epoch held by the checkpoint on disk."""

    def __init__(self, directory=None):
        self.directory = directory
        self.begin, self.epochs, self.on_disk = [], [], []

    def on_train_begin(self, history, network):
        self.begin.append(len(history))

    def on_epoch_end(self, history, network):
        self.epochs.append(len(history))
        if self.directory is not None:
            path = os.path.join(self.directory, CHECKPOINT_NAME)
            self.on_disk.append(_load(self.directory)["epoch"] if os.path.exists(path) else None)


def test_checkpoints_every_k_epochs_and_at_the_end(X, tmp_path):
    record = Record(tmp_path)
    params = dict(PARAMS, max_epochs=5, checkpoint_every=2)
    CoHiClust(checkpoint_dir=tmp_path, callbacks=[record], **params).fit(X)
    # callbacks run before the checkpoint of their own epoch is written
    assert record.on_disk == [None, None, 2, 2, 4]
    assert _load(tmp_path)["epoch"] == 5
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]  # no temporary file left behind


def test_checkpoint_holds_the_whole_training_state(X, tmp_path):
    model = CoHiClust(checkpoint_dir=tmp_path, **PARAMS).fit(X)
    state = _load(tmp_path)  # plain tensors and Python values: loads with weights_only=True
    for key in ("network", "optimizer", "view_generator", "shuffle_generator", "global_rng", "leaf_mask", "history"):
        assert key in state
    assert state["epoch"] == PARAMS["max_epochs"] and len(state["history"]) == PARAMS["max_epochs"]
    assert state["metadata"]["n_samples"] == len(X)
    assert state["metadata"]["input_shape"] == (8, 8)
    assert state["metadata"]["depth"] == 2
    # the pruning state: 3 leaves left by training (the saved network buffer agrees)
    assert int(state["leaf_mask"].sum()) == 3
    assert torch.equal(state["leaf_mask"], state["network"]["leaf_mask"])
    assert len(state["optimizer"]["state"]) == len(list(model.module_.parameters()))


def test_finished_checkpoint_is_loaded_without_training(X, tmp_path, uninterrupted):
    CoHiClust(checkpoint_dir=tmp_path, **PARAMS).fit(X)
    record = Record()
    again = CoHiClust(checkpoint_dir=tmp_path, callbacks=[record], **PARAMS).fit(X)
    assert record.epochs == [] and record.begin == []  # nothing trained
    _assert_same_model(again, uninterrupted)


def test_checkpoint_of_a_stopped_run_counts_as_finished(X, tmp_path):
    stop = lambda history: len(history) == 2  # noqa: E731
    first = CoHiClust(checkpoint_dir=tmp_path, callbacks=[stop], **PARAMS).fit(X)
    assert len(first.history_) == 2 and _load(tmp_path)["stopped"]
    record = Record()
    again = CoHiClust(checkpoint_dir=tmp_path, callbacks=[record], **PARAMS).fit(X)
    assert record.epochs == [] and len(again.history_) == 2
    _assert_same_model(again, first)


class Flat(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
        self.output_dim = hidden

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(depth=3), "depth=2, but this model has depth=3"),
        (dict(backbone="cnn"), "backbone='mlp', but this model has backbone='cnn'"),
        (dict(data=lambda X: X[:, :6, :6].copy()), r"input_shape=\(8, 8\), but this model has input_shape=\(6, 6\)"),
        (dict(data=lambda X: X[::-1].copy()), "other data"),
        (dict(data=lambda X: X[:200].copy()), "other data"),
        (dict(max_epochs=8), "other training settings .*max_epochs=2 there, 8 here"),
        (dict(projection_dim=16), "projection_dim=128, but this model has projection_dim=16"),
        (
            dict(backbone_params={"width": 4, "input_size": 12}),
            r"network_input_size=\(16, 16\), but this model has network_input_size=\(12, 12\)",
        ),
    ],
    ids=["depth", "backbone", "input-shape", "data", "n-samples", "settings", "projection", "cnn-input-size"],
)
def test_mismatched_checkpoint_is_refused(X, tmp_path, change, match):
    params = dict(PARAMS, max_epochs=2)
    if "backbone_params" in change:  # a CNN written at its default working size, resumed at another
        params.update(backbone="cnn", backbone_params={"width": 4})
    CoHiClust(checkpoint_dir=tmp_path, **params).fit(X)
    change = dict(change)
    data = change.pop("data", lambda X: X)(X)
    params.update(change)
    with pytest.raises(ValueError, match=match):
        CoHiClust(checkpoint_dir=tmp_path, **params).fit(data)


def test_checkpoint_of_another_custom_backbone_is_refused(X, tmp_path):
    params = dict(PARAMS, max_epochs=2)
    CoHiClust(checkpoint_dir=tmp_path, **dict(params, backbone=Flat(32))).fit(X)
    with pytest.raises(ValueError, match="does not fit this model's network"):
        CoHiClust(checkpoint_dir=tmp_path, **dict(params, backbone=Flat(16))).fit(X)


def test_checkpoint_of_a_cnn_with_other_stages_is_refused(X, tmp_path):
    params = dict(PARAMS, max_epochs=2, backbone="cnn")
    CoHiClust(checkpoint_dir=tmp_path, **dict(params, backbone_params={"width": 4})).fit(X)
    with pytest.raises(ValueError, match="does not fit this model's network"):
        CoHiClust(checkpoint_dir=tmp_path, **dict(params, backbone_params={"width": 4, "stages": 2})).fit(X)


def test_unreadable_checkpoint_is_refused(X, tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read the checkpoint"):
        CoHiClust(checkpoint_dir=tmp_path, **PARAMS).fit(X)


def test_interrupted_run_saves_last_epoch_and_resumes_exactly(X, tmp_path, uninterrupted):
    def interrupt(history):
        if len(history) == 3:
            raise KeyboardInterrupt

    params = dict(PARAMS, checkpoint_every=10)  # no regular checkpoint before the interrupt
    with pytest.warns(RuntimeWarning, match="end of epoch 3.*fit again to resume"):
        CoHiClust(checkpoint_dir=tmp_path, callbacks=[interrupt], **params).fit(X)
    assert _load(tmp_path)["epoch"] == 3
    resumed = CoHiClust(checkpoint_dir=tmp_path, **params).fit(X)
    _assert_same_model(resumed, uninterrupted)


def test_interrupted_run_with_neighbours_resumes_exactly(X, tmp_path):
    """The neighbour table mined when the tree phase starts is in the checkpoint, so resuming needs no new one."""
    params = dict(PARAMS, checkpoint_every=10, n_neighbors=5)

    def interrupt(history):
        if len(history) == 3:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="end of epoch 3"):
        CoHiClust(checkpoint_dir=tmp_path, callbacks=[interrupt], **params).fit(X)
    saved = _load(tmp_path)
    assert saved["neighbors"].shape == (len(X), 5) and saved["neighbors_data"] is not None
    resumed = CoHiClust(checkpoint_dir=tmp_path, **params).fit(X)
    _assert_same_model(resumed, CoHiClust(**params).fit(X))


def test_sigkilled_fit_resumes_to_the_same_parameters(X, tmp_path, uninterrupted):
    """A real child process, killed with SIGKILL mid-training, then resumed in this process."""
    checkpoints, marker = tmp_path / "ckpt", tmp_path / "marker"
    hang_at = 4  # the child hangs when epoch 4 ends: the checkpoint of epoch 3 (after pruning) is on disk
    child = subprocess.Popen(
        [sys.executable, CHILD, str(checkpoints), str(marker), str(hang_at), str(torch.get_num_threads())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child did not reach the epoch to be killed at"
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    state = _load(checkpoints)
    assert state["epoch"] == hang_at - 1
    assert int(state["leaf_mask"].sum()) == 3  # the pruning of epoch 3 is in the checkpoint

    record = Record()
    resumed = CoHiClust(checkpoint_dir=checkpoints, callbacks=[record], **PARAMS).fit(X)
    assert record.begin == [hang_at - 1]  # training restarted after epoch 3, not from scratch
    assert record.epochs == list(range(hang_at, PARAMS["max_epochs"] + 1))
    _assert_same_model(resumed, uninterrupted)
