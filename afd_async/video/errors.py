"""The one exception type of the video decoders (its own module so `probe` and `codec` share it)."""

from __future__ import annotations

__all__ = ["VideoDecodeError"]


class VideoDecodeError(ValueError):
    """The bytes are not a valid, in-limits MP4 video; the message says why."""
