import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
