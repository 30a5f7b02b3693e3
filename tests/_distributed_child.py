"""One process of the data-parallel tests in ``tests/test_distributed.py``.

Run as ``python tests/_distributed_child.py OUT_DIR`` with torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
set by the test: every case of :data:`CASES` is fitted with
``distributed="auto"`` on :func:`make_data`, and each process saves
``OUT_DIR/<case>-rank<r>.pt`` (the network's state, ``labels_``,
``history_`` losses, how many checkpoints it wrote); rank 0 also pickles
the fitted estimator to ``OUT_DIR/<case>.pkl``.  The test imports
:data:`CASES` and :func:`make_data` from here, so both sides fit the same
thing.
"""

import os
import pickle
import sys
import warnings

import numpy as np

#: The settings every case shares: tiny, float32, CPU.
COMMON = dict(
    max_epochs=3,
    warmup_epochs=1,
    batch_size=16,
    backbone="mlp",
    backbone_params={"hidden": 16},
    projection_dim=8,
    mixed_precision=False,
    device="cpu",
    random_state=0,
)

#: case -> (estimator class name, its parameters)
CASES = {
    "cohiclust": ("CoHiClust", dict(COMMON, depth=2, n_clusters=3, n_neighbors=0)),
    "neighbours": ("CoHiClust", dict(COMMON, depth=2, n_clusters=4, n_neighbors=3)),
    "contrastive": ("ContrastiveClustering", dict(COMMON, n_clusters=3)),
    # images: the small CNN (BatchNorm2d), the "shapes" augmentation, batches of 21 and 22 (uneven parts);
    # tree_init="random": the k-means start of this tiny CNN's representation turns differences of 1e-7 into
    # 1e-4 in the tree head (one process with 1 and with 2 threads differ as much), which says nothing here
    "images": (
        "CoHiClust",
        dict(COMMON, backbone="cnn", backbone_params={"width": 4}, batch_size=20, depth=2, tree_init="random"),
    ),
}


def make_data():
    """64 samples of 8-dim vectors in two blobs, float32."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8)).astype(np.float32)
    X[:32] += 2.0
    return X


def data_of(case):
    """The training data of ``case``: 64 of scikit-learn's 8x8 digits for "images", else :func:`make_data`."""
    if case == "images":
        from sklearn.datasets import load_digits

        return load_digits().images[:64].astype(np.float32)
    return make_data()


def estimator(case, **changes):
    """The estimator of ``case`` with parameters changed by ``changes``."""
    import skcohiclust

    name, params = CASES[case]
    return getattr(skcohiclust, name)(**{**params, **changes})


def record(model, writes):
    """What the test compares: state, labels, losses, checkpoints written."""
    return {
        "state": {k: v.detach().clone() for k, v in model.module_.state_dict().items()},
        "labels": np.asarray(model.labels_),
        "losses": [entry["loss"] for entry in model.history_],
        "writes": writes,
    }


class InterruptAt:
    """Raise KeyboardInterrupt (as Ctrl-C would) when epoch ``epoch`` ends."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, history, network):
        if len(history) == self.epoch:
            raise KeyboardInterrupt


def main(argv):
    out = argv[1]
    import torch

    torch.set_num_threads(1)
    import skcohiclust.training as training

    writes = []
    original = training.write_checkpoint

    def counting_write(state, path):
        writes.append(path)
        return original(state, path)

    training.write_checkpoint = counting_write
    rank = int(os.environ["RANK"])
    X = make_data()
    for case in CASES:
        writes.clear()
        checkpoint_dir = os.path.join(out, f"checkpoints-{case}")
        model = estimator(case, checkpoint_dir=checkpoint_dir).fit(data_of(case))
        torch.save(record(model, len(writes)), os.path.join(out, f"{case}-rank{rank}.pt"))
        if rank == 0:
            with open(os.path.join(out, f"{case}.pkl"), "wb") as handle:
                pickle.dump(model, handle)
    # interrupted after epoch 2 (Ctrl-C), then resumed from the checkpoint by a second fit
    checkpoint_dir = os.path.join(out, "checkpoints-resume")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimator("cohiclust", checkpoint_dir=checkpoint_dir, callbacks=[InterruptAt(2)]).fit(X)
    writes.clear()
    model = estimator("cohiclust", checkpoint_dir=checkpoint_dir).fit(X)
    torch.save(record(model, len(writes)), os.path.join(out, f"resume-rank{rank}.pt"))
    # a warm start: 2 epochs, then 2 more
    model = estimator("cohiclust", max_epochs=2).fit(X)
    model.set_params(warm_start=True, max_epochs=2).fit(X)
    torch.save(record(model, 0), os.path.join(out, f"warm-rank{rank}.pt"))
    # interrupted after epoch 2 and left so: the test resumes it in a single process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        checkpoint_dir = os.path.join(out, "checkpoints-handover")
        estimator("cohiclust", checkpoint_dir=checkpoint_dir, callbacks=[InterruptAt(2)]).fit(X)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
