"""Data-parallel training (issue 21): two CPU processes with the gloo backend against one process.

The two processes are started once for the module, as ``torchrun`` would
start them (its environment variables, ``distributed="auto"``), and run
every case of ``tests/_distributed_child.py``; the tests read what they
saved.  Tolerance against a single process: ``rtol=1e-4, atol=1e-5`` on
every parameter and buffer.  The two runs compute the same sums in another
order (a batch's sums split over the processes and added by the
all-reduce; BatchNorm's statistics from per-process sums about the running
mean instead of PyTorch's kernel), so they agree to float32 rounding, which
grows a little with every optimiser step: the measured largest difference
after 3 epochs is below 3e-7 absolute.
"""

import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from skcohiclust import CoHiClust, ConCURL, SeCu
from skcohiclust.distributed import ProcessGroup, resolve_process_group, shard_sizes

from ._distributed_child import CASES, data_of, estimator, make_data

CHILD = os.path.join(os.path.dirname(__file__), "_distributed_child.py")
WORLD_SIZE = 2
RTOL, ATOL = 1e-4, 1e-5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the child on two gloo processes; the directory of what they saved."""
    out = tmp_path_factory.mktemp("distributed")
    port = _free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    processes = []
    for rank in range(WORLD_SIZE):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(WORLD_SIZE),
            LOCAL_WORLD_SIZE=str(WORLD_SIZE),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        )
        log = open(out / f"log{rank}", "w")  # closed below
        processes.append((subprocess.Popen([sys.executable, CHILD, str(out)], env=env, stdout=log, stderr=log), log))
    for process, log in processes:
        try:
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    for rank, (process, _) in enumerate(processes):
        assert process.returncode == 0, (out / f"log{rank}").read_text()[-3000:]
    return out


@pytest.fixture(scope="module")
def X():
    return make_data()


@pytest.fixture(scope="module")
def single():
    """The same fits in one process (no process group)."""
    return {case: estimator(case, distributed=False).fit(data_of(case)) for case in CASES}


def _load(runs, name, rank):
    return torch.load(runs / f"{name}-rank{rank}.pt", weights_only=False)


@pytest.mark.parametrize("case", list(CASES))
def test_same_as_one_process(runs, single, case):
    saved = _load(runs, case, 0)
    expected = single[case]
    for name, value in expected.module_.state_dict().items():
        torch.testing.assert_close(saved["state"][name], value, rtol=RTOL, atol=ATOL, msg=name)
    np.testing.assert_array_equal(saved["labels"], expected.labels_)
    np.testing.assert_allclose(saved["losses"], [entry["loss"] for entry in expected.history_], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", [*CASES, "resume"])
def test_every_process_ends_with_the_same_model(runs, case):
    first, second = _load(runs, case, 0), _load(runs, case, 1)
    for name, value in first["state"].items():
        assert torch.equal(value, second["state"][name]), name
    np.testing.assert_array_equal(first["labels"], second["labels"])


@pytest.mark.parametrize("case", list(CASES))
def test_only_rank_0_writes_checkpoints(runs, case):
    assert _load(runs, case, 0)["writes"] == CASES[case][1]["max_epochs"]
    assert _load(runs, case, 1)["writes"] == 0
    assert os.listdir(runs / f"checkpoints-{case}") == ["checkpoint.pt"]


def test_resume_after_interrupt_equals_uninterrupted(runs):
    resumed, uninterrupted = _load(runs, "resume", 0), _load(runs, "cohiclust", 0)
    assert resumed["writes"] == 1  # the last epoch only: epochs 1-2 came from the checkpoint
    for name, value in uninterrupted["state"].items():
        assert torch.equal(value, resumed["state"][name]), name
    assert resumed["losses"] == uninterrupted["losses"]


def test_warm_start(runs, X):
    model = estimator("cohiclust", max_epochs=2, distributed=False).fit(X)
    model.set_params(warm_start=True, max_epochs=2).fit(X)
    first, second = _load(runs, "warm", 0), _load(runs, "warm", 1)
    for name, value in model.module_.state_dict().items():
        torch.testing.assert_close(first["state"][name], value, rtol=RTOL, atol=ATOL, msg=name)
        assert torch.equal(first["state"][name], second["state"][name]), name
    np.testing.assert_array_equal(first["labels"], model.labels_)


def test_two_process_checkpoint_resumes_in_one_process(runs, single, X):
    """The checkpoint holds no trace of the number of processes: one process finishes what two began."""
    model = estimator("cohiclust", checkpoint_dir=runs / "checkpoints-handover", distributed=False).fit(X)
    assert [entry["epoch"] for entry in model.history_] == [1, 2, 3]
    for name, value in single["cohiclust"].module_.state_dict().items():
        torch.testing.assert_close(model.module_.state_dict()[name], value, rtol=RTOL, atol=ATOL, msg=name)
    np.testing.assert_array_equal(model.labels_, single["cohiclust"].labels_)


@pytest.mark.parametrize("case", list(CASES))
def test_rank_0_pickle_predicts_in_a_plain_process(runs, case):
    with open(runs / f"{case}.pkl", "rb") as handle:
        model = pickle.load(handle)
    assert not torch.distributed.is_initialized()
    # the synchronised BatchNorm layers were swapped back: the network is the plain one
    assert not any(isinstance(m, nn.SyncBatchNorm) or "Sync" in type(m).__name__ for m in model.module_.modules())
    np.testing.assert_array_equal(model.predict(data_of(case)), model.labels_)


def test_auto_without_torchrun_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_process_group("auto", torch.device("cpu")) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_process_group("auto", torch.device("cpu")) is None
    assert resolve_process_group(False, torch.device("cpu")) is None


def test_true_without_processes_is_refused(monkeypatch, X):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        CoHiClust(distributed=True, max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="distributed must be"):
        CoHiClust(distributed="yes", max_epochs=1).fit(X)


def test_batches_smaller_than_the_processes_are_refused(monkeypatch, X):
    monkeypatch.setattr("skcohiclust._base.resolve_process_group", lambda *args: ProcessGroup(rank=0, world_size=4))
    with pytest.raises(ValueError, match="batch_size=2"):
        CoHiClust(batch_size=2, max_epochs=1).fit(X)


@pytest.mark.parametrize("method", [ConCURL, SeCu])
def test_methods_without_data_parallel_training_refuse_a_process_group(monkeypatch, X, method):
    monkeypatch.setattr("skcohiclust._base.resolve_process_group", lambda *args: ProcessGroup(rank=0, world_size=2))
    with pytest.raises(ValueError, match=f"{method.__name__} does not train data-parallel yet.*distributed=False"):
        method(n_clusters=2, max_epochs=1).fit(X)


def test_shards_are_contiguous_and_even():
    np.testing.assert_array_equal(shard_sizes(17, 2), [9, 8])
    np.testing.assert_array_equal(shard_sizes(16, 4), [4, 4, 4, 4])
    group = ProcessGroup(rank=1, world_size=2)
    assert group.shard(17) == slice(9, 17)
