"""Video contracts and resampling (DESIGN.md §4)."""

from afd_async.video.clip import Clip

__all__ = ["Clip"]
