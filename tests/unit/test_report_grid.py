"""`train.report.write_grid` names its files `<stem>.mp4` / `<stem>.gif`, also when the stem holds a dot."""

from pathlib import Path

import torch

from afd_async.train.report import write_grid


def test_grid_files_keep_a_dotted_stem(tmp_path: Path) -> None:
    clip = -torch.ones(1, 3, 4, 8, 8)  # (N, 3, F, H, W) in [-1, 1]
    clip[:, :, 2:, 2:6, 2:6] = 1.0
    paths = write_grid([clip, clip], 8.0, tmp_path / "quality_cpu_beta0.5_grid", upscale=1)
    assert [p.name for p in paths] == ["quality_cpu_beta0.5_grid.mp4", "quality_cpu_beta0.5_grid.gif"]
    assert all(p.stat().st_size > 0 for p in paths)
