import os

# The test tensors are tiny: extra threads only add synchronisation, which on a loaded 2-core
# machine made single tests 20x slower. One thread here, and in every subprocess a test starts.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def configs_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "configs"
