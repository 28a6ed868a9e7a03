"""The diagnostics' PNGs as images in the run's TensorBoard (``RUN_DIR/tensorboard``, beside its scalars)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def log_images(run_dir: str | Path, pngs: list[Path], step: int = 0) -> Path:
    """Add every PNG as an image ``diagnostics/<file stem>`` at ``step`` (the checkpoint's); returns the log folder."""
    from matplotlib.image import imread
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(run_dir) / "tensorboard"
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for png in pngs:
            img = imread(png)  # (H, W, 4) floats in [0, 1]
            rgb = (np.clip(img[..., :3], 0.0, 1.0) * 255).round().astype(np.uint8)  # (H, W, 3)
            writer.add_image(f"diagnostics/{Path(png).stem}", rgb, global_step=step, dataformats="HWC")
    finally:
        writer.close()
    return log_dir
