"""Render backends of the local teacher server: `(prompt, seed, params) -> Clip`.

`params` carries what the client asked for: `model` (str), and, when given,
`width`/`height` (from `size`), `seconds` and `fps`. A backend honours what it
can and falls back to its own defaults, as a real provider renders at its
native settings. Backends run in the server's render threads.

- `physics_backend`: the procedural physics renderer (`afd_async.physics`),
  the embedded default teacher; deterministic per (prompt, seed).
- `diffusers_backend`: any local diffusers text-to-video pipeline directory.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Optional

import numpy as np

from afd_async.physics import render_prompt
from afd_async.video.clip import Clip

__all__ = ["diffusers_backend", "frames_to_clip", "physics_backend"]


def _pick(params: dict, key: str, default: Any) -> Any:
    value = params.get(key)
    return default if value is None else value


def physics_backend(height: int = 96, width: int = 96, fps: float = 24.0, seconds: float = 2.0
                    ) -> Callable[[str, int, dict], Clip]:
    """A backend that renders prompts with the procedural physics renderer.

    Args:
        height, width, fps, seconds: defaults when the request does not set them.

    Returns:
        `backend(prompt, seed, params) -> Clip`; a prompt outside the physics
        grammar raises `PromptError` (a `ValueError`: the job fails `invalid_request`).
    """

    def render(prompt: str, seed: int, params: dict) -> Clip:
        clip, _truth = render_prompt(
            prompt,
            seed=seed,
            height=int(_pick(params, "height", height)),
            width=int(_pick(params, "width", width)),
            fps=float(_pick(params, "fps", fps)),
            seconds=float(_pick(params, "seconds", seconds)),
        )
        return clip

    return render


def frames_to_clip(frames: Any, fps: float) -> Clip:
    """Convert a diffusers pipeline's `frames` output to a `Clip`.

    Accepts what text-to-video pipelines return: a numpy array or torch tensor
    `(B, T, H, W, C)` / `(T, H, W, C)` (floats in [0, 1] or uint8), or nested
    lists of PIL images / arrays; the first batch item is taken.
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("pipeline returned no frames")
        if isinstance(frames[0], (list, tuple)) or (hasattr(frames[0], "ndim") and frames[0].ndim == 4):
            frames = frames[0]  # batch of videos -> first video
        frames = np.stack([np.asarray(f) for f in frames])
    if hasattr(frames, "detach"):  # torch tensor
        frames = frames.detach().float().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 5:
        arr = arr[0]
    if arr.ndim != 4:
        raise ValueError(f"pipeline frames have shape {arr.shape}, expected (T, H, W, C)")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):  # (T, C, H, W)
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return Clip(frames=np.ascontiguousarray(arr), fps=fps)


def diffusers_backend(
    path: str,
    *,
    height: int = 256,
    width: int = 256,
    fps: float = 8.0,
    seconds: float = 2.0,
    num_inference_steps: int = 25,
    device: str = "cpu",
    dtype: Optional[str] = None,
    extra_call_kwargs: Optional[dict[str, Any]] = None,
) -> Callable[[str, int, dict], Clip]:
    """A backend around a local diffusers text-to-video pipeline directory.

    The pipeline is loaded now (`DiffusionPipeline.from_pretrained(path)`), so
    a bad path fails at start-up rather than on the first job. Calls are
    serialised with a lock: pipelines are not thread-safe. Only arguments the
    pipeline's `__call__` accepts are passed (`num_frames`, `height`, `width`,
    `num_inference_steps`, `generator`, `output_type`).

    Args:
        path: directory written by `pipeline.save_pretrained`.
        height, width, fps, seconds: defaults when a request does not set them;
            `num_frames = max(1, round(seconds * fps))`.
        num_inference_steps: denoising steps per video.
        device: torch device for the pipeline.
        dtype: torch dtype name (e.g. "float16"); None keeps the saved dtype.
        extra_call_kwargs: further keyword arguments for every call.
    """
    # deferred: torch and diffusers (seconds) load only for the diffusers backend
    import torch
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["torch_dtype"] = getattr(torch, dtype)
    pipe = DiffusionPipeline.from_pretrained(path, **kwargs).to(device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    accepted = set(inspect.signature(pipe.__call__).parameters)
    lock = threading.Lock()

    def render(prompt: str, seed: int, params: dict) -> Clip:
        f = float(_pick(params, "fps", fps))
        call: dict[str, Any] = {
            "num_frames": max(1, round(float(_pick(params, "seconds", seconds)) * f)),
            "height": int(_pick(params, "height", height)),
            "width": int(_pick(params, "width", width)),
            "num_inference_steps": num_inference_steps,
            "generator": torch.Generator(device="cpu").manual_seed(int(seed)),
            "output_type": "np",
            **(extra_call_kwargs or {}),
        }
        call = {k: v for k, v in call.items() if k in accepted}
        with lock, torch.inference_mode():
            out = pipe(prompt=prompt, **call)
        frames = getattr(out, "frames", None)
        if frames is None:
            frames = out[0] if isinstance(out, tuple) else getattr(out, "videos", None)
        return frames_to_clip(frames, f)

    return render
