import os

import pytest
import torch

# Two cores on the build machines: keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def configs_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "configs"
