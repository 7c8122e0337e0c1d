import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
# Under pytest-xdist every worker gets one torch thread: 2 workers x 2 threads on a
# 2-core machine made training steps ~10x slower.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
