"""Checkpoint files: safe loading, clear refusals of broken or foreign files, one writer per folder."""

import io
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from skcohiclust import Callback, CoHiClust
from skcohiclust.checkpoints import CheckpointError, checkpoint_lock, read_checkpoint, write_checkpoint
from skcohiclust.training import CHECKPOINT_NAME

from ._resume_child import PARAMS, make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHORT = dict(PARAMS, max_epochs=2)


@pytest.fixture(scope="module")
def X():
    return make_data()


@pytest.fixture(scope="module")
def saved(X, tmp_path_factory):
    """The bytes of a real checkpoint of a finished 2-epoch fit, and the model it gave."""
    folder = tmp_path_factory.mktemp("saved")
    model = CoHiClust(checkpoint_dir=folder, **SHORT).fit(X)
    return (folder / CHECKPOINT_NAME).read_bytes(), model


def _fit_on(folder, X, content):
    (folder / CHECKPOINT_NAME).write_bytes(content)
    return CoHiClust(checkpoint_dir=folder, **SHORT).fit(X)


def test_checkpoint_file_loads_with_plain_torch_load_weights_only(saved, tmp_path):
    content, _ = saved
    outer = torch.load(io.BytesIO(content), weights_only=True)
    assert outer["skcohiclust_checkpoint"] == 1 and outer["payload"].dtype == torch.uint8
    payload = outer["payload"].numpy().tobytes()
    state = torch.load(io.BytesIO(payload), weights_only=True)  # the state itself: tensors, plain values
    assert state["epoch"] == 2 and state["format"] == 1


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupted"),
        (lambda b: b[:-10], "truncated or corrupted"),
        (lambda b: b"", "truncated or corrupted"),
        (lambda b: b"not a checkpoint", "not a skcohiclust checkpoint, or is corrupted"),
    ],
    ids=["half", "tail-cut", "empty", "text"],
)
def test_truncated_or_garbled_checkpoint_is_refused_naming_the_file(saved, X, tmp_path, damage, match):
    content, _ = saved
    with pytest.raises(CheckpointError, match=match) as info:
        _fit_on(tmp_path, X, damage(content))
    message = str(info.value)
    assert str(tmp_path / CHECKPOINT_NAME) in message and "delete it to start afresh" in message
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None  # no torch traceback chained to it


def test_flipped_byte_in_the_weights_is_caught_by_the_checksum(saved, X, tmp_path):
    content, _ = saved
    outer = torch.load(io.BytesIO(content), weights_only=True)
    payload = outer["payload"].numpy().tobytes()
    # a flipped byte deep in the tensor data: torch.load alone would load it as a wrong weight
    position = len(payload) // 2
    broken = payload[:position] + bytes([payload[position] ^ 0xFF]) + payload[position + 1 :]
    assert torch.load(io.BytesIO(broken), weights_only=True)["epoch"] == 2  # torch does not notice
    buffer = io.BytesIO()
    torch.save(dict(outer, payload=torch.frombuffer(bytearray(broken), dtype=torch.uint8)), buffer)
    with pytest.raises(CheckpointError, match="checksum does not match"):
        _fit_on(tmp_path, X, buffer.getvalue())


class _Exploit:
    """A pickle that would create a file when loaded without ``weights_only``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_foreign_pickle_is_refused_and_runs_no_code(X, tmp_path):
    target = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"format": 1, "network": _Exploit(str(target))}, buffer)
    with pytest.raises(CheckpointError, match="was not loaded: loading it could run code"):
        _fit_on(tmp_path, X, buffer.getvalue())
    assert not target.exists()
    # a plain pickle (not a torch file) is refused as well
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        _fit_on(tmp_path, X, pickle.dumps({"format": 1}))


@pytest.mark.parametrize(
    "state, match",
    [
        ([1, 2, 3], "not a skcohiclust checkpoint .*list"),
        ({"weights": torch.zeros(3)}, "not a skcohiclust checkpoint .*dict without a checkpoint format"),
        ({"format": 7}, "checkpoint format 7"),
    ],
    ids=["list", "foreign-dict", "other-format"],
)
def test_foreign_torch_file_is_refused(X, tmp_path, state, match):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(ValueError, match=match):
        _fit_on(tmp_path, X, buffer.getvalue())


def test_checkpoint_missing_parts_is_refused(saved, X, tmp_path):
    content, _ = saved
    (tmp_path / "whole.pt").write_bytes(content)
    state = read_checkpoint(tmp_path / "whole.pt")
    del state["optimizer"]
    write_checkpoint(state, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="not a complete skcohiclust checkpoint .*optimizer"):
        CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)


def test_checkpoint_of_version_0_1_without_checksum_still_resumes(saved, X, tmp_path):
    content, model = saved
    (tmp_path / "whole.pt").write_bytes(content)
    state = read_checkpoint(tmp_path / "whole.pt")
    torch.save(state, tmp_path / CHECKPOINT_NAME)  # how 0.1.0 wrote it: the state itself
    again = CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)
    np.testing.assert_array_equal(again.labels_, model.labels_)


def test_held_checkpoint_dir_refuses_a_second_fit(X, tmp_path):
    with checkpoint_lock(tmp_path):
        with pytest.raises(CheckpointError, match="checkpoint_dir .* is in use by another fit"):
            CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)
    assert not os.path.exists(tmp_path / CHECKPOINT_NAME)  # the refused fit wrote nothing
    CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)  # free again
    assert os.path.exists(tmp_path / CHECKPOINT_NAME)


class _SecondFit(Callback):
    """During the first fit's first epoch, runs a second fit on the same folder (another thread)."""

    def __init__(self, folder, X):
        self.folder, self.X, self.error = folder, X, None

    def on_epoch_end(self, history, network):
        if len(history) != 1:
            return False

        def other():
            try:
                CoHiClust(checkpoint_dir=self.folder, **dict(SHORT, random_state=1)).fit(self.X)
            except Exception as exc:  # recorded for the test to inspect
                self.error = exc

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        return False


def test_two_fits_on_one_checkpoint_dir_at_once(X, tmp_path):
    second = _SecondFit(tmp_path, X)
    first = CoHiClust(checkpoint_dir=tmp_path, callbacks=[second], **SHORT).fit(X)
    assert isinstance(second.error, CheckpointError) and "in use by another fit" in str(second.error)
    # the first fit's checkpoint is its own, and whole
    state = read_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["epoch"] == 2 and state["history"][-1]["loss"] == first.history_[-1]["loss"]


def test_checkpoint_dir_held_by_another_process_is_refused(X, tmp_path):
    code = (
        "import sys, time\n"
        "from skcohiclust.checkpoints import checkpoint_lock\n"
        "with checkpoint_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match="in use by another fit"):
            CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)
    finally:
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=60)
    CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)  # released when the other process let go


def test_temporary_files_of_a_dead_writer_are_removed(X, tmp_path):
    stale = tmp_path / f"{CHECKPOINT_NAME}.tmp-999999"
    stale.write_bytes(b"half a checkpoint")
    CoHiClust(checkpoint_dir=tmp_path, **SHORT).fit(X)
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]
