"""Teacher clips for the in-process loops: render with the physics renderer, resample, cache.

The async system gets teacher clips through the teacher gateway and Redis; the
synchronous oracle and pretraining call the renderer directly, with the same
resampling, so both see identical clips for the same (prompt, seed).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from afd_async.physics import GroundTruth, PhysicsOverrides, render_prompt
from afd_async.video.clip import Clip
from afd_async.video.resample import resample_clip

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig


class LocalTeacherSource:
    """(prompt, seed) -> student-sized clip `(3, F, H, W)` in [-1, 1], with an LRU cache.

    Args:
        renderer: teacher-side size/fps/length (the renderer's own).
        student: the student's height/width/fps/num_frames that clips are resampled to.
        physics: deliberately wrong physics (pretraining data); None for the true teacher.
        through_codec: encode and decode each clip as the local teacher server and actor do.
    """

    def __init__(
        self,
        *,
        render_height: int,
        render_width: int,
        render_fps: float,
        render_seconds: float,
        height: int,
        width: int,
        fps: float,
        num_frames: int,
        physics: Optional[PhysicsOverrides] = None,
        cache_size: int = 4096,
        through_codec: bool = False,
    ) -> None:
        self.render_kw = dict(height=render_height, width=render_width, fps=render_fps, seconds=render_seconds)
        self.student_kw = dict(height=height, width=width, fps=fps, num_frames=num_frames)
        self.physics = physics
        self.through_codec = through_codec
        self._cache: OrderedDict[tuple[str, int, Optional[PhysicsOverrides]], tuple[np.ndarray, GroundTruth]] = OrderedDict()
        self._cache_size = cache_size

    def clip(self, prompt: str, seed: int, physics: Optional[PhysicsOverrides] = None) -> tuple[np.ndarray, GroundTruth]:
        """uint8 `(F, H, W, 3)` at the student's size, and the scene's ground truth."""
        phys = physics if physics is not None else self.physics
        key = (prompt, seed, phys)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        clip, gt = render_prompt(prompt, seed=seed, physics=phys, **self.render_kw)
        if self.through_codec:  # what the local teacher server sends and the teacher actor decodes
            # deferred: PyAV loads only where clips are encoded
            from afd_async.video.codec import decode_mp4, encode_mp4

            data = encode_mp4(clip)
            clip = decode_mp4(data, max_frames=clip.num_frames, max_pixels=clip.height * clip.width, max_bytes=len(data))
        small = resample_clip(clip, **self.student_kw)
        out = (small.frames, gt)
        self._cache[key] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def batch(self, prompts: list[str], seeds: list[int], physics: Optional[list[Optional[PhysicsOverrides]]] = None) -> torch.Tensor:
        """`(B, 3, F, H, W)` float in [-1, 1]."""
        phys = physics or [None] * len(prompts)
        frames = np.stack([self.clip(p, s, ph)[0] for p, s, ph in zip(prompts, seeds, phys)])
        return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def clip_from_video(video: torch.Tensor, fps: float) -> Clip:
    """`(3, F, H, W)` in [-1, 1] -> Clip (uint8 `(F, H, W, 3)`)."""
    frames = video.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return Clip(np.ascontiguousarray(frames), fps)


def make_teacher_source(cfg: "RootConfig", physics: Optional[PhysicsOverrides] = None) -> LocalTeacherSource:
    """The in-process teacher of `cfg` (renderer size in, student size out)."""
    r, s = cfg.teacher.renderer, cfg.student
    return LocalTeacherSource(
        render_height=r.height, render_width=r.width, render_fps=r.fps, render_seconds=r.seconds,
        height=s.height, width=s.width, fps=s.fps, num_frames=s.num_frames, physics=physics,
        through_codec=cfg.train.sync_teacher_codec and physics is None,
    )
