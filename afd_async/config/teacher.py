"""Teacher schema (config group `teacher`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class RendererConfig:
    """The procedural physics renderer behind the embedded local teacher.

    Deliberately different from the student's size/fps/length, so resampling is real.
    """

    height: int = 96
    width: int = 96
    fps: float = 24.0
    seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8 or self.fps <= 0 or self.seconds <= 0:
            raise ValueError("renderer needs height,width >= 8 and fps, seconds > 0")


@dataclass
class TeacherConfig:
    """Where teacher clips come from."""

    kind: Literal["local"] = "local"  # `local`: the in-process / local-server physics renderer
    renderer: RendererConfig = field(default_factory=RendererConfig)
