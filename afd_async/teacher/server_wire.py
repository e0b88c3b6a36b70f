"""The OpenAI Videos wire format of the local teacher server: create bodies in, Video objects and pages out.

Every rule names its source: the API reference
(developers.openai.com/api/reference/resources/videos) and the official Python
SDK's types (`openai/types/...`, openai 3.x), which is what clients parse.

- **Create** (`video_create_params.py`; `resources/videos.py` sends it as
  multipart/form-data, every field a string): `prompt` (required), `model`
  (default `sora-2`), `seconds` (default "4"), `size` "WxH" (default
  `720x1280`), `input_reference` (an image to start from: this server renders
  from text only and refuses it with 400). A JSON body with the same fields is
  read too. Extensions of this server: `seed` (int), `fps` and `webhook` (a URL
  that gets a signed `video.completed`/`video.failed` event, `server_webhooks`). The defaults of a
  server are its `VideoDefaults` (`afd teacher-server`: the renderer's size and
  length), and the job is rendered with exactly the values its object shows.
- **Video object** (`video.py`): `id`, `object: "video"`, `model`, `status` in
  queued|in_progress|completed|failed, `progress` (int 0-100), `created_at`,
  `completed_at`, `expires_at` (Unix seconds; `expires_at` is when the
  downloadable assets expire: the object itself stays `completed`), `prompt`,
  `seconds` as a string ("4", "1.5"), `size` "WxH", `error` (`{code, message}`
  or null, `video_create_error.py`), `remixed_from_video_id` (null: no remixes
  here). Extension: `seed` (the SDK's models keep extra fields).
- **List** (`video_list_params.py`; `pagination.py` `SyncConversationCursorPage`):
  `after` (an id), `limit` (1-100, default 20), `order` asc|desc by creation
  (default desc) -> `{object: "list", data, first_id, last_id, has_more}`. The
  SDK asks for the next page with `after=last_id` while `has_more` is true.
- **Content variants** (`video_download_content_params.py`): `video` (MP4, the
  default), `thumbnail` (WebP), `spritesheet` (JPEG); anything else is 400.
- **Delete** (`video_delete_response.py`): `{id, object: "video.deleted", deleted: true}`.
- **Errors**: `{"error": {"code", "type", "message", "param"}}`, the API's error object.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from afd_async.teacher.server_jobs import Job

__all__ = ["MAX_BODY", "VARIANTS", "CreateRequest", "VideoDefaults", "WireError", "error_response",
           "format_seconds", "parse_create", "parse_list_query", "parse_size", "read_create_body", "video_object"]

MAX_BODY = 64 * 1024  # bytes of a create body (the prompt is at most 32,000 characters)
MAX_PROMPT = 32_000  # characters (API reference, create video: prompt)
_SIZE = re.compile(r"^(\d{1,4})x(\d{1,4})$")
_MAX_PIXELS = 1920 * 1080
_MAX_FRAMES = 2000
VARIANTS: dict[str, str] = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
PUBLIC_STATUSES = ("queued", "in_progress", "completed", "failed")  # video.py: Video.status


class WireError(ValueError):
    """A request the API refuses with 400; `param` names the offending field (the error object's `param`)."""

    def __init__(self, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.param = param


def error_response(status: int, code: str, message: str, kind: str = "invalid_request_error",
                   headers: Optional[dict[str, str]] = None, param: Optional[str] = None) -> JSONResponse:
    """An OpenAI-shaped error: `{"error": {"code", "type", "message", "param"}}`."""
    return JSONResponse({"error": {"code": code, "type": kind, "message": message, "param": param}},
                        status_code=status, headers=headers)


def parse_size(text: str) -> tuple[int, int]:
    """`"WxH"` -> `(width, height)`, within 8x8 and 1920x1080 pixels; raises `WireError`."""
    match = _SIZE.match(str(text))
    if not match:
        raise WireError("size must look like '720x1280' (width x height)", "size")
    width, height = int(match.group(1)), int(match.group(2))
    if min(width, height) < 8 or width * height > _MAX_PIXELS:
        raise WireError(f"size must be at least 8x8 and at most {_MAX_PIXELS} pixels", "size")
    return width, height


def format_seconds(seconds: float) -> str:
    """Seconds as the API writes them: a string, no trailing `.0` ("4", "1.5")."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


@dataclass(frozen=True)
class VideoDefaults:
    """What a create that leaves a field out gets (API reference: `sora-2`, "4", `720x1280`).

    Attributes:
        model: model name when the request names none.
        seconds: clip length in seconds.
        size: `"WxH"` resolution.
    """

    model: str = "sora-2"
    seconds: float = 4.0
    size: str = "720x1280"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("the default model needs a name: the Video object's model is required")
        if not 0.0 < self.seconds <= 60.0:
            raise ValueError(f"default seconds must be in (0, 60], got {self.seconds}")
        parse_size(self.size)


@dataclass(frozen=True)
class CreateRequest:
    """A validated create: what the job object shows and the backend renders."""

    prompt: str
    model: str
    seed: int
    seconds: float
    width: int
    height: int
    fps: Optional[float] = None
    webhook: Optional[str] = None  # where to POST the signed completion event (`server_webhooks`)

    def render_params(self) -> dict[str, Any]:
        """The backend's `params` (see `server_backends`)."""
        return {"seconds": self.seconds, "fps": self.fps, "width": self.width, "height": self.height}


async def read_create_body(request: Request) -> dict[str, Any]:
    """The create fields from a multipart/urlencoded form (as the SDK sends) or a JSON object.

    Raises:
        WireError: unreadable body, a JSON value that is not an object, or a file upload.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=64, max_part_size=MAX_BODY)
        except HTTPException as exc:  # Starlette's own 400 for a malformed form: answer in the API's shape
            raise WireError(f"malformed form body: {exc.detail}") from None
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                await form.close()
                raise WireError(f"'{key}': file uploads are not supported (this server renders from text only)", key)
            fields[key] = value
        return fields
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"the body is neither JSON nor a form: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("the body must be a JSON object")
    return body


def _number(body: Mapping[str, Any], key: str) -> Optional[float]:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise WireError(f"{key} must be a number, got {str(value)[:40]!r}", key) from None
    if not math.isfinite(out):
        raise WireError(f"{key} must be finite", key)
    return out


def parse_create(body: Mapping[str, Any], defaults: VideoDefaults) -> CreateRequest:
    """Validate a create body (fields as JSON values or form strings) and fill in `defaults`.

    Raises:
        WireError: with the reason and the offending field.
    """
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise WireError(f"prompt must be a non-empty string of at most {MAX_PROMPT} characters", "prompt")
    if body.get("input_reference") not in (None, ""):
        raise WireError("input_reference is not supported: this server renders from text only", "input_reference")
    model = body.get("model") or defaults.model
    if not isinstance(model, str):
        raise WireError("model must be a string", "model")
    try:
        seed = int(body.get("seed") or 0)
    except (TypeError, ValueError):
        raise WireError("seed must be an integer", "seed") from None
    seconds = _number(body, "seconds")
    seconds = defaults.seconds if seconds is None else seconds
    if not 0.0 < seconds <= 60.0:
        raise WireError("seconds must be in (0, 60]", "seconds")
    fps = _number(body, "fps")
    if fps is not None and not 0.0 < fps <= 120.0:
        raise WireError("fps must be in (0, 120]", "fps")
    width, height = parse_size(body.get("size") or defaults.size)
    if seconds * (fps or 0.0) > _MAX_FRAMES:
        raise WireError(f"seconds x fps must be at most {_MAX_FRAMES} frames", "seconds")
    webhook = body.get("webhook") or None
    if webhook is not None and (not isinstance(webhook, str) or not re.match(r"^https?://[^\s]{1,2000}$", webhook)):
        raise WireError("webhook must be an http(s) URL", "webhook")
    return CreateRequest(prompt=prompt, model=model, seed=seed, seconds=seconds, width=width, height=height, fps=fps,
                         webhook=webhook)


def parse_list_query(query: Mapping[str, str]) -> tuple[Optional[str], int, Literal["asc", "desc"]]:
    """`(after, limit, order)` of a list request; raises `WireError` on a bad value."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise WireError("limit must be an integer", "limit") from None
    if not 1 <= limit <= 100:
        raise WireError("limit must be between 1 and 100", "limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise WireError("order must be 'asc' or 'desc'", "order")
    return query.get("after") or None, limit, order  # type: ignore[return-value]


def video_object(job: "Job", progress: int) -> dict[str, Any]:
    """The job as the API's Video object (call under the queue lock; the job is not deleted)."""
    p = job.params
    assert job.status in PUBLIC_STATUSES, f"internal status {job.status!r} must not reach the wire"
    return {
        "id": job.id, "object": "video", "model": job.model, "status": job.status, "progress": int(progress),
        "created_at": int(job.created_at),
        "completed_at": None if job.completed_at is None else int(job.completed_at),
        "expires_at": None if job.expires_at is None else int(math.ceil(job.expires_at)),
        "prompt": job.prompt, "seconds": format_seconds(p["seconds"]), "size": f"{p['width']}x{p['height']}",
        "error": job.error, "remixed_from_video_id": None, "seed": job.seed,
    }
