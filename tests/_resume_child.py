"""Child process for the kill-and-resume test in ``tests/test_resume.py``.

Run as ``python tests/_resume_child.py CHECKPOINT_DIR MARKER HANG_AT THREADS``:
fits :data:`PARAMS` on :func:`make_data` with ``checkpoint_dir``; when epoch
``HANG_AT`` ends (the checkpoint of epoch ``HANG_AT - 1`` is then on disk,
the one of ``HANG_AT`` not yet) it writes ``MARKER`` and sleeps, waiting for
the test to kill it with SIGKILL.  The test imports :data:`PARAMS` and
:func:`make_data` from here, so both sides fit the same thing.
"""

import sys
import time

import numpy as np

#: A small run that prunes one leaf (4 -> 3) at the end of epoch 3.
PARAMS = dict(
    depth=2,
    n_clusters=3,
    max_epochs=6,
    warmup_epochs=1,
    batch_size=64,
    backbone="mlp",
    random_state=0,
    checkpoint_every=1,
)


def make_data():
    """The first 256 of scikit-learn's 8x8 digits, float32."""
    from sklearn.datasets import load_digits

    return load_digits().images[:256].astype(np.float32)


def main(argv):
    checkpoint_dir, marker, hang_at, threads = argv[1], argv[2], int(argv[3]), int(argv[4])
    import torch

    torch.set_num_threads(threads)
    from skcohiclust import Callback, CoHiClust

    class HangAt(Callback):
        def on_epoch_end(self, history, network):
            if len(history) == hang_at:
                with open(marker, "w") as handle:
                    handle.write(str(len(history)))
                time.sleep(600)

    CoHiClust(checkpoint_dir=checkpoint_dir, callbacks=[HangAt()], **PARAMS).fit(make_data())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
