"""Resampler: known answers for time, space, aspect crop and padding."""

from __future__ import annotations

import numpy as np
import pytest

from afd_async.video.clip import Clip
from afd_async.video.resample import ClipTooShortError, resample_clip, resample_with_report, resize_frames


def _index_clip(t: int, fps: float, h: int = 4, w: int = 4) -> Clip:
    """Frame i is filled with the value i, so output values name their source frame."""
    frames = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()
    return Clip(frames=frames, fps=fps)


def _square_clip(t: int, h: int, w: int, size: int, fps: float) -> tuple[Clip, list[tuple[float, float]]]:
    """A white square moving right by 2 px/frame; returns the clip and true centroids (y, x)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    centres = []
    for i in range(t):
        y0, x0 = 8, 4 + 2 * i
        frames[i, y0 : y0 + size, x0 : x0 + size] = 255
        centres.append((y0 + size / 2 - 0.5, x0 + size / 2 - 0.5))
    return Clip(frames=frames, fps=fps), centres


def _centroid(img: np.ndarray) -> tuple[float, float]:
    m = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    return float((m * yy).sum() / m.sum()), float((m * xx).sum() / m.sum())


def test_24_to_8_fps_picks_every_third_frame() -> None:
    rep = resample_with_report(_index_clip(48, 24.0), fps=8.0, height=4, width=4, num_frames=16)
    assert rep.source_indices == tuple(range(0, 48, 3))
    assert rep.clip.frames[:, 0, 0, 0].tolist() == list(range(0, 48, 3))
    assert rep.padded_frames == 0 and rep.clip.fps == 8.0


def test_upsampling_fps_repeats_nearest() -> None:
    rep = resample_with_report(_index_clip(4, 8.0), fps=16.0, height=4, width=4, num_frames=8)
    assert rep.source_indices == (0, 1, 1, 2, 2, 3, 3, 3)  # times 0, .0625 (tie -> later), .125, ...
    assert rep.padded_frames == 1  # t = 7/16 s rounds to source frame 4, past the end


def test_short_clip_is_padded_and_reported() -> None:
    rep = resample_with_report(_index_clip(10, 10.0), fps=10.0, height=4, width=4, num_frames=16)
    assert rep.padded_frames == 6
    assert rep.clip.frames[10:, 0, 0, 0].tolist() == [9] * 6
    assert rep.source_fraction == pytest.approx(10 / 16)


def test_short_clip_below_minimum_raises() -> None:
    with pytest.raises(ClipTooShortError, match="minimum"):
        resample_clip(_index_clip(10, 10.0), fps=10.0, height=4, width=4, num_frames=16, min_source_fraction=0.8)
    clip = resample_clip(_index_clip(10, 10.0), fps=10.0, height=4, width=4, num_frames=16, min_source_fraction=0.6)
    assert clip.num_frames == 16


def test_moving_square_centroid_after_2x_shrink_and_fps_halving() -> None:
    src, centres = _square_clip(t=12, h=32, w=48, size=6, fps=24.0)
    out = resample_clip(src, fps=12.0, height=16, width=24, num_frames=6)
    for k in range(6):
        cy, cx = centres[2 * k]  # 24 -> 12 fps: frame 2k
        oy, ox = _centroid(out.frames[k])
        # Area downsampling by 2 maps pixel centre c to (c + 0.5) / 2 - 0.5 exactly.
        assert oy == pytest.approx((cy + 0.5) / 2 - 0.5, abs=1e-2)
        assert ox == pytest.approx((cx + 0.5) / 2 - 0.5, abs=1e-2)


def test_area_shrink_is_mean_of_block_and_antialiased() -> None:
    # A 1-px checkerboard must average to flat grey, not alias into stripes.
    yy, xx = np.mgrid[:12, :12]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    frames = np.repeat(board[None, :, :, None], 3, axis=3)
    out = resize_frames(frames, 6, 6)  # each 2x2 block holds two white pixels
    assert np.all(np.abs(out.astype(int) - 128) <= 1)
    thirds = resize_frames(frames, 4, 4)  # 3x3 blocks hold 5 or 4 whites: exact means
    assert set(np.unique(thirds).tolist()) == {round(255 * 4 / 9), round(255 * 5 / 9)}
    fractional = resize_frames(frames, 5, 5)  # 12 -> 5, non-integer factor
    assert np.all(np.abs(fractional.astype(int) - 128) <= 26)


def test_bilinear_enlarge_preserves_constant_and_ramp() -> None:
    ramp = np.broadcast_to(np.array([0, 100, 200], np.uint8)[None, None, :, None], (1, 3, 3, 3)).copy()
    out = resize_frames(ramp, 6, 6)
    row = out[0, 0, :, 0].astype(int).tolist()
    assert row == [0, 25, 75, 125, 175, 200]  # half-pixel centres, clamped edges
    assert np.all(out[0, :, :, 0] == out[0, 0:1, :, 0])


def test_aspect_center_crop() -> None:
    # 16x32 source: left quarter red, middle half green, right quarter blue; target square.
    frames = np.zeros((1, 16, 32, 3), np.uint8)
    frames[:, :, :8, 0] = 255
    frames[:, :, 8:24, 1] = 255
    frames[:, :, 24:, 2] = 255
    out = resample_clip(Clip(frames=frames, fps=1.0), fps=1.0, height=8, width=8, num_frames=1)
    assert out.frames.shape == (1, 8, 8, 3)
    assert np.all(out.frames[..., 1] == 255) and np.all(out.frames[..., [0, 2]] == 0)
    tall = resize_frames(np.transpose(frames, (0, 2, 1, 3)), 8, 8)  # 32x16: crop top/bottom
    assert np.all(tall[..., 1] == 255)


def test_identity_when_already_matching() -> None:
    src, _ = _square_clip(t=5, h=32, w=48, size=6, fps=24.0)
    out = resample_clip(src, fps=24.0, height=32, width=48, num_frames=5)
    np.testing.assert_array_equal(out.frames, src.frames)


def test_bad_targets_raise() -> None:
    with pytest.raises(ValueError):
        resample_clip(_index_clip(4, 8.0), fps=0.0, height=4, width=4, num_frames=4)
    with pytest.raises(ValueError):
        resample_clip(_index_clip(4, 8.0), fps=8.0, height=4, width=4, num_frames=0)
