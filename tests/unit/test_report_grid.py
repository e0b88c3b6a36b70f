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


def test_grid_without_gif_writes_the_mp4_only(tmp_path: Path) -> None:
    """Real-size runs skip the GIF (minutes of palette quantisation at 480x832)."""
    clip = torch.zeros(1, 3, 4, 8, 8)
    paths = write_grid([clip], 8.0, tmp_path / "samples", upscale=1, gif=False)
    assert [p.name for p in paths] == ["samples.mp4"] and not (tmp_path / "samples.gif").exists()
