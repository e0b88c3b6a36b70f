"""Teacher schema (config group `teacher`): provider, shared quota, actor and local server.

Two roles read this block. `afd teacher-server` (the embedded local teacher)
reads `renderer` and `server`; `afd teacher-actor` reads everything else:
which provider to call (`provider`, `base_url`, `model`, `params`), the
account's shared quota (`quota`), gateway timeouts (`gateway`), completion
callbacks (`callback`), where prompts
come from (`source`), how untrusted videos are decoded (`decode`) and how often
a clip may be reused (`reuse_count`). Secrets never live here: keys come from
`AFD_TEACHER_API_KEY(_FILE)` and friends (`afd_async.config.credentials`).

The defaults serve `afd run` on a 2-core laptop: a local server with a fast
render (0.2 s) and a generous quota, so the async main job never waits long on
the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional

from afd_async.config.providers import ALIASES, PROVIDERS, canonical_provider

_REQUEST_FAULTS = ("rate_limit", "server_error", "hang")
_JOB_FAULTS = ("content_policy", "truncated_mp4", "corrupt_mp4", "expired_url", "wrong_size", "wrong_fps", "wrong_length",
               "decode_bomb", "oversized")


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
class QuotaConfig:
    """The provider account's limits, shared by every teacher actor through Redis (`SharedQuota`).

    Set them at or just below what the provider grants: the shared quota is what
    keeps N actors from being throttled, so a higher value only buys 429s.
    """

    create_rate_per_min: float = 6000.0  # sustained job creates per minute, all actors together
    burst: int = 10  # creates admissible back to back after idling (GCRA burst)
    max_in_flight: int = 16  # jobs submitted and not finished, all actors together
    lease_ttl_s: float = 30.0  # an in-flight slot not renewed this long (its actor died) is reclaimed
    acquire_timeout_s: float = 60.0  # longest wait for a create admission before the prompt is handed back
    aimd_decrease: float = 0.5  # in-flight limit x this on a provider throttle (429)
    aimd_increase: float = 0.5  # in-flight limit + this per successful create
    aimd_cooldown_s: float = 2.0  # one burst of 429s seen by N actors halves the limit once

    def __post_init__(self) -> None:
        if not self.create_rate_per_min > 0:
            raise ValueError(f"quota.create_rate_per_min must be > 0 (creates per minute), got {self.create_rate_per_min}")
        if self.burst < 1 or self.max_in_flight < 1:
            raise ValueError("quota.burst and quota.max_in_flight must be >= 1: with 0 no job could ever start")
        if not self.lease_ttl_s > 0 or not self.acquire_timeout_s > 0:
            raise ValueError("quota.lease_ttl_s and quota.acquire_timeout_s must be > 0")
        if not 0 < self.aimd_decrease < 1 or self.aimd_increase < 0 or self.aimd_cooldown_s < 0:
            raise ValueError("need 0 < quota.aimd_decrease < 1, aimd_increase >= 0, aimd_cooldown_s >= 0")


@dataclass
class GatewayConfig:
    """Timeouts and retry budgets of one teacher job (`TeacherGateway`); every wait is bounded."""

    call_timeout_s: float = 30.0  # one provider HTTP call (a hung server is cut here)
    poll_interval_s: float = 0.25  # first poll delay; grows x1.5 per poll up to poll_max_interval_s
    poll_max_interval_s: float = 5.0
    job_timeout_s: float = 900.0  # a job not finished after this is cancelled and retried as a fresh job
    submit_attempts: int = 8  # tries per create for 429 / 5xx / timeouts (exponential backoff)
    retry_initial_s: float = 0.5  # first backoff; doubles up to retry_max_s
    retry_max_s: float = 30.0
    download_attempts: int = 2  # downloads of one result before the job counts as broken
    max_attempts: int = 6  # fresh jobs per prompt after failures; then the prompt is dead-lettered
    claim_ttl_s: float = 30.0  # a job whose actor stopped renewing its claim this long passes to another actor
    claim_wait_s: float = 1.0  # wait this long for another actor's claim before handing the prompt back
    ambiguity_timeout_s: float = 900.0  # unconfirmed create with no provider lookup: resubmit after this
    drain_timeout_s: float = 20.0  # on SIGTERM: let in-flight jobs finish this long, then hand them back

    def __post_init__(self) -> None:
        for name in ("call_timeout_s", "poll_interval_s", "poll_max_interval_s", "job_timeout_s", "retry_initial_s",
                     "retry_max_s", "claim_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"gateway.{name} must be > 0 (it bounds a wait), got {getattr(self, name)}")
        if min(self.submit_attempts, self.download_attempts, self.max_attempts) < 1:
            raise ValueError("gateway.submit_attempts, download_attempts and max_attempts must be >= 1")
        if self.claim_wait_s < 0 or self.ambiguity_timeout_s < 0 or self.drain_timeout_s < 0:
            raise ValueError("gateway.claim_wait_s, ambiguity_timeout_s and drain_timeout_s must be >= 0")


@dataclass
class CallbackConfig:
    """Provider completion callbacks: the quota slot freed the moment a job ends, not at the next poll.

    With `enabled`, each teacher actor listens on `host:port` (`teacher.callbacks.CallbackReceiver`)
    and sends its URL (plus an unguessable per-run path token) with every create, for providers that
    call back: replicate and openai/local (Standard Webhooks signature, secret from
    `AFD_TEACHER_WEBHOOK_SECRET`), fal (ED25519, verified against `fal_jwks_path` when given, else
    accepted unsigned), luma and kling (unsigned: only ids this actor created, and only as a wake-up
    for a poll). Polling stays as the fallback every `fallback_poll_s`, and is all that runway and
    seedance get.
    """

    enabled: bool = False
    host: str = "127.0.0.1"  # listen address of the receiver
    port: int = 0  # listen port (0: any free port; set one when a tunnel or ingress forwards to it)
    public_url: Optional[str] = None  # base URL the provider reaches (None: http://host:port)
    fallback_poll_s: float = 30.0  # poll a job this often while its callback has not come
    tolerance_s: float = 300.0  # signed callbacks: largest accepted clock distance (older ones are replays)
    fal_jwks_path: Optional[str] = None  # fal: a saved copy of fal's JWKS (no fetch at run time)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"teacher.callback.port must be in [0, 65535], got {self.port}")
        if not self.fallback_poll_s > 0 or not self.tolerance_s > 0:
            raise ValueError("teacher.callback.fallback_poll_s and tolerance_s must be > 0 (each bounds a wait)")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"teacher.callback.public_url must be an http(s) URL, got {self.public_url!r}")


@dataclass
class SourceConfig:
    """Where a teacher actor's prompts come from.

    `redis`: a list of msgpack records `{"schema": 1, "prompt_id", "prompt", "seed"}`
    (the planner pushes with LPUSH); a popped record sits in the actor's own
    processing list until its job ends, so a killed actor loses nothing.
    `file`: a prompt file (`afd_async.physics.prompt_file` format), one
    clip per (prompt, seed) for seeds 0..seeds_per_prompt-1, for a standalone
    `afd teacher-actor` filling a teacher cache. Every line is checked; a bad
    one is logged with its line number, counted and dead-lettered, and a file
    without a good line stops the actor (exit 2). `afd run` refuses this kind:
    its plan hands prompts to both actors, give the file as `prompts=FILE`.
    """

    kind: Literal["redis", "file"] = "redis"
    queue_key: str = "afd:teacher:queue"  # the Redis list the planner pushes to
    pop_timeout_s: float = 1.0  # blocking pop timeout (also how fast an idle actor notices SIGTERM)
    actor_ttl_s: float = 15.0  # an actor silent this long is dead; its processing list goes back to the queue
    path: Optional[str] = None  # prompt file (kind=file)
    seeds_per_prompt: int = 1  # kind=file: distinct teacher clips per prompt
    refill: bool = False  # kind=file: keep going; re-query a prompt (next seed) once its clips are used up
    refill_interval_s: float = 2.0  # kind=file, refill: how often to look for used-up prompts

    def __post_init__(self) -> None:
        if self.kind == "file" and not self.path:
            raise ValueError("teacher.source.kind=file needs teacher.source.path (a prompt file)")
        if not self.queue_key:
            raise ValueError("teacher.source.queue_key must be a non-empty Redis key")
        if not self.pop_timeout_s > 0 or not self.actor_ttl_s > 0 or not self.refill_interval_s > 0:
            raise ValueError("teacher.source.pop_timeout_s, actor_ttl_s and refill_interval_s must be > 0")
        if self.actor_ttl_s < 3 * self.pop_timeout_s:
            raise ValueError("teacher.source.actor_ttl_s must be >= 3 x pop_timeout_s: the heartbeat runs between pops")
        if self.seeds_per_prompt < 1:
            raise ValueError(f"teacher.source.seeds_per_prompt must be >= 1, got {self.seeds_per_prompt}")


@dataclass
class DecodeConfig:
    """Caps on untrusted teacher videos (`decode_mp4`) and the minimum length accepted."""

    max_frames: int = 2000  # frames declared or decoded
    max_pixels: int = 1920 * 1080  # pixels per frame
    max_bytes: int = 256 * 1024 * 1024  # download size
    max_total_pixels: int = 300 * 1920 * 1080  # frames x pixels of a whole clip, checked before decoding (~1.9 GB RGB)
    min_source_fraction: float = 0.9  # a clip shorter than this share of the student's duration is a bad result

    def __post_init__(self) -> None:
        if min(self.max_frames, self.max_pixels, self.max_bytes, self.max_total_pixels) < 1:
            raise ValueError("teacher.decode caps must be >= 1")
        if not 0.0 <= self.min_source_fraction <= 1.0:
            raise ValueError(f"teacher.decode.min_source_fraction must be in [0, 1], got {self.min_source_fraction}")


@dataclass
class FaultsConfig:
    """Fault injection of the local server; mirrors `afd_async.teacher.server_faults.FaultConfig`.

    Each fault is a probability in [0, 1]; request faults and job faults each sum to <= 1.
    """

    seed: int = 0  # seeds the draws, so a run is reproducible
    rate_limit: float = 0.0  # P(a create answers 429) beyond the real rate limit
    server_error: float = 0.0  # P(a request answers 500)
    hang: float = 0.0  # P(a request hangs hang_s, then 504)
    content_policy: float = 0.0  # P(a job is rejected by the content policy)
    truncated_mp4: float = 0.0  # P(a job's MP4 is cut short)
    corrupt_mp4: float = 0.0  # P(a job's MP4 is garbled)
    expired_url: float = 0.0  # P(a job's result URL is already expired)
    wrong_size: float = 0.0  # P(half the size)
    wrong_fps: float = 0.0  # P(double the declared fps)
    wrong_length: float = 0.0  # P(half the frames)
    decode_bomb: float = 0.0  # P(the MP4 is a decode bomb: one 4096x4096 frame in ~5 kB)
    oversized: float = 0.0  # P(the MP4 is padded to 32 MiB, over a small download cap)
    hang_s: float = 30.0  # how long a hung response stalls
    retry_after_s: float = 1.0  # Retry-After sent with injected 429s

    def __post_init__(self) -> None:
        for name in _REQUEST_FAULTS + _JOB_FAULTS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"teacher.server.faults.{name} is a probability in [0, 1], got {getattr(self, name)}")
        for group, names in (("request", _REQUEST_FAULTS), ("job", _JOB_FAULTS)):
            if sum(getattr(self, n) for n in names) > 1.0 + 1e-9:
                raise ValueError(f"teacher.server.faults: {group} fault probabilities sum above 1 (one fault each at most)")
        if not self.hang_s > 0 or not self.retry_after_s > 0:
            raise ValueError("teacher.server.faults.hang_s and retry_after_s must be > 0")

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `FaultConfig` (the server's own frozen type)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ServerConfig:
    """The local teacher server (`afd teacher-server`): limits per API key, latency, backend, faults."""

    create_rate_per_min: float = 6000.0  # creates per minute per key (429 rate_limit beyond)
    create_burst: Optional[float] = None  # tokens a key may bank (None: one second's worth, at least 1)
    max_in_flight: int = 16  # queued + running jobs per key (429 concurrency_limit beyond)
    max_queued: int = 64  # jobs waiting for a render worker, all keys (503 overloaded beyond)
    render_latency_s: float = 0.2  # least time a job takes, like a provider's render time
    render_workers: int = 2  # render threads
    result_ttl_s: float = 600.0  # a finished video can be downloaded this long (then 410)
    backend: Literal["physics", "diffusers"] = "physics"  # procedural renderer, or a local diffusers pipeline
    diffusers_path: Optional[str] = None  # backend=diffusers: a `save_pretrained` pipeline directory
    diffusers_steps: int = 25  # backend=diffusers: denoising steps per video
    diffusers_device: str = "cpu"  # backend=diffusers: torch device
    diffusers_dtype: Optional[str] = None  # backend=diffusers: e.g. "float16" (None: as saved)
    faults: FaultsConfig = field(default_factory=FaultsConfig)

    def __post_init__(self) -> None:
        if not self.create_rate_per_min > 0:
            raise ValueError(f"teacher.server.create_rate_per_min must be > 0, got {self.create_rate_per_min}")
        if self.create_burst is not None and self.create_burst < 1:
            raise ValueError("teacher.server.create_burst must be >= 1 (or null)")
        if self.max_in_flight < 1 or self.max_queued < 0 or self.render_workers < 1:
            raise ValueError("need teacher.server.max_in_flight >= 1, max_queued >= 0, render_workers >= 1")
        if self.render_latency_s < 0 or not self.result_ttl_s > 0:
            raise ValueError("need teacher.server.render_latency_s >= 0 and result_ttl_s > 0")
        if self.backend == "diffusers" and not self.diffusers_path:
            raise ValueError("teacher.server.backend=diffusers needs teacher.server.diffusers_path (a local pipeline)")
        if self.diffusers_steps < 1:
            raise ValueError("teacher.server.diffusers_steps must be >= 1")


@dataclass
class TeacherConfig:
    """Where teacher clips come from and how the teacher actors share one account."""

    kind: Literal["local", "remote"] = "local"  # `local`: `afd run` starts the local server; `remote`: a live API
    renderer: RendererConfig = field(default_factory=RendererConfig)
    provider: str = "local"  # adapter name (`afd_async.config.providers.PROVIDERS`); local = OpenAI-style, our server
    base_url: Optional[str] = None  # API root; None: the local server (cluster.teacher_server_*) or the provider default
    model: str = "physics-v1"  # model name sent with every job
    account: str = "default"  # quota namespace: actors with the same account share one quota
    params: dict[str, Any] = field(default_factory=dict)  # provider request extras (size, seconds, fps, ...)
    concurrency: int = 4  # jobs one actor drives at once (async, one process)
    reuse_count: int = 1  # pairs per teacher clip before the prompt needs a fresh clip
    cache_ttl_s: Optional[float] = None  # teacher clip lifetime in Redis (None: kept)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    callback: CallbackConfig = field(default_factory=CallbackConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        if canonical_provider(self.provider) not in PROVIDERS:
            raise ValueError(f"teacher.provider {self.provider!r} is unknown; known: "
                             f"{sorted(PROVIDERS) + sorted(ALIASES)}")
        if self.kind == "local" and self.provider != "local":
            raise ValueError("teacher.kind=local runs our local server: set teacher.provider=local "
                             "(or teacher.kind=remote for a live API)")
        if self.kind == "remote" and self.provider == "local":
            raise ValueError("teacher.kind=remote needs a live provider (e.g. teacher.provider=kling)")
        if not self.account or any(c in self.account for c in "{}"):
            raise ValueError(f"teacher.account must be a non-empty name without braces, got {self.account!r}")
        if self.base_url is not None and "@" in self.base_url:
            raise ValueError("teacher.base_url must not contain credentials; keys come from AFD_TEACHER_API_KEY(_FILE)")
        if self.concurrency < 1 or self.reuse_count < 1:
            raise ValueError("teacher.concurrency and teacher.reuse_count must be >= 1")
        if self.cache_ttl_s is not None and not self.cache_ttl_s > 0:
            raise ValueError("teacher.cache_ttl_s must be > 0 or null")
