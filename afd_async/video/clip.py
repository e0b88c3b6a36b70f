"""The video contract every component speaks: RGB uint8 `[T, H, W, 3]` plus fps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clip:
    """A decoded RGB clip.

    Attributes:
        frames: `uint8` array of shape `(T, H, W, 3)`, C-contiguous.
        fps: frames per second (> 0).
    """

    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray):
            raise TypeError(f"Clip.frames must be a numpy array, got {type(f).__name__}")
        if f.dtype != np.uint8:
            raise ValueError(f"Clip.frames must be uint8, got {f.dtype}")
        if f.ndim != 4 or f.shape[-1] != 3 or min(f.shape[:3]) < 1:
            raise ValueError(f"Clip.frames must have shape (T, H, W, 3) with T, H, W >= 1, got {f.shape}")
        if not (self.fps > 0):
            raise ValueError(f"Clip.fps must be > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps
