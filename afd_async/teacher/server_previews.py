"""Preview images of a rendered video: the `thumbnail` and `spritesheet` content variants.

The OpenAI Videos API serves, besides the MP4, a thumbnail (WebP) and a
spritesheet (JPEG) of each completed video (`GET /v1/videos/{id}/content?variant=`;
SDK: `openai/types/video_download_content_params.py`; formats from the video
generation guide). The local server makes both from the clip it rendered, once,
in the render thread, so a download never decodes video.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from afd_async.video.clip import Clip

__all__ = ["SPRITE_FRAMES", "previews", "spritesheet_jpeg", "thumbnail_webp"]

SPRITE_FRAMES = 8  # frames in a spritesheet row, evenly spaced over the clip
_SPRITE_HEIGHT = 90  # pixel height of one spritesheet cell


def thumbnail_webp(clip: Clip) -> bytes:
    """The first frame as a WebP image at the video's size."""
    buf = io.BytesIO()
    Image.fromarray(clip.frames[0]).save(buf, format="WEBP", quality=80)
    return buf.getvalue()


def spritesheet_jpeg(clip: Clip, frames: int = SPRITE_FRAMES) -> bytes:
    """Up to `frames` evenly spaced frames side by side, each scaled to 90 px high, as one JPEG."""
    t, h, w, _ = clip.frames.shape
    picks = np.unique(np.linspace(0, t - 1, num=min(frames, t)).round().astype(int))
    cell_h = min(h, _SPRITE_HEIGHT)
    cell_w = max(1, round(w * cell_h / h))
    sheet = Image.new("RGB", (cell_w * len(picks), cell_h))
    for i, k in enumerate(picks):
        sheet.paste(Image.fromarray(clip.frames[k]).resize((cell_w, cell_h)), (i * cell_w, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def previews(clip: Clip) -> dict[str, bytes]:
    """`{"thumbnail": WebP bytes, "spritesheet": JPEG bytes}` of one clip."""
    return {"thumbnail": thumbnail_webp(clip), "spritesheet": spritesheet_jpeg(clip)}
