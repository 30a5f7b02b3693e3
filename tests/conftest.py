import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 1,797 real 8x8 handwritten digits: images and labels."""
    data = load_digits()
    return data.images.astype(np.float32), data.target


@pytest.fixture(scope="session")
def small_digits(digits):
    """The first 300 digits, for quick fits."""
    images, target = digits
    return images[:300], target[:300]


#: Settings that make a fit take well under a second on small data.
FAST = dict(max_epochs=3, batch_size=64, random_state=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: bitwise comparisons need one fixed count (a subprocess uses the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
