"""Every Prometheus metric afd_async exports, declared once (DESIGN.md §1, STYLE.md "Metrics").

Why one module: the dashboard (`ops/grafana/dashboards/afd.json`), the alert
queries and the table in `docs/METRICS.md` are checked against these
declarations, so a metric that is not declared here does not exist.

Naming: `afd_<component>_<quantity>_<unit>`, base units (seconds, bytes,
ratio), `_total` for counters, histograms for latencies. Every series carries
the labels `role` (the `afd` command: `teacher-actor`, ...) and `actor_id` (the
replica within its role); other labels take a small, enumerated set of values,
never a per-request id.

Registry design: one `CollectorRegistry` per process, `REGISTRY` below, with
module-level metric singletons. A process that plays several roles (the
launcher's in-process mode, or a test that runs a teacher actor and a feeder
side by side) uses one `RoleLabels` per role, so the series differ by label and
nothing is ever registered twice. The registry is private (not
`prometheus_client.REGISTRY`) so that a metric created elsewhere by mistake is
not exported silently, and tests can read exactly what a scrape would see.

Call order in a role's entry point:

    m, port = metrics.start_role_metrics("teacher-actor", port=cfg.cluster.metrics_port, host=cfg.cluster.host,
                                         tries=cfg.cluster.metrics_port_tries)   # bind() + start_metrics_server()
    m(metrics.TEACHER_ACTOR_JOBS, state="submitted").inc()
    with m(metrics.TEACHER_ACTOR_LATENCY, phase="end_to_end").time(): ...
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Optional, Sequence
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client import make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from afd_async.teacher.contract import ErrorClass

Role = Literal["teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner"]
Kind = Literal["counter", "gauge", "histogram"]

ROLES: tuple[Role, ...] = ("teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
COMMON_LABELS: tuple[str, ...] = ("role", "actor_id")

# Default metrics port of each role (`cluster.metrics_port` unset). Scaled replicas that share one network
# namespace (host networking) take the next free port of their role's block of 10 (`tries`).
DEFAULT_METRICS_PORTS: dict[Role, int] = {
    "teacher-server": 9101,  # not 9100: node_exporter's port on many hosts
    "teacher-actor": 9110,
    "student-actor": 9120,
    "feeder": 9130,
    "d-learner": 9140,
    "student-learner": 9150,
}
PORT_BLOCK = 10

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)

# Buckets, in base units. Teacher APIs take minutes; learner steps and weight syncs take ms to seconds.
TEACHER_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)
STEP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STALENESS_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)
ADVANTAGE_BUCKETS = (-5, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 5)

JOB_EVENTS = ("submitted", "succeeded", "failed", "cancelled", "expired", "retried", "ambiguous", "dead_lettered",
              "cache_hit")
ERROR_CLASSES = tuple(e.value for e in ErrorClass)


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric: what the docs table shows and what the dashboard test checks against."""

    name: str  # full exposition name; counters end in `_total`
    kind: Kind
    help: str
    group: str
    roles: tuple[Role, ...]
    labels: tuple[str, ...] = ()  # beyond COMMON_LABELS
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # enumerated label values, pre-initialised
    buckets: Optional[tuple[float, ...]] = None
    common: bool = True  # carries COMMON_LABELS (GPU series carry only `device`: a GPU belongs to a process, not a role)

    def label_names(self) -> tuple[str, ...]:
        return (COMMON_LABELS if self.common else ()) + self.labels

    def series(self) -> tuple[str, ...]:
        """Names of the time series a scrape shows for this metric."""
        if self.kind == "counter":
            return (self.name, self.name[: -len("_total")] + "_created")
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)


SPECS: list[MetricSpec] = []
_METRICS: dict[str, Any] = {}


def _declare(kind: Kind, name: str, help: str, group: str, roles: Sequence[Role], labels: Sequence[str] = (),
             values: Optional[dict[str, tuple[str, ...]]] = None, buckets: Optional[Sequence[float]] = None) -> Any:
    spec = MetricSpec(name, kind, help, group, tuple(roles), tuple(labels), dict(values or {}),
                      tuple(buckets) if buckets else None)
    if not name.startswith("afd_"):
        raise ValueError(f"{name}: afd metrics start with afd_")
    if (kind == "counter") != name.endswith("_total"):
        raise ValueError(f"{name}: counters and only counters end in _total")
    all_labels = spec.label_names()
    if kind == "counter":
        metric: Any = Counter(name, help, all_labels, registry=REGISTRY)
    elif kind == "gauge":
        metric = Gauge(name, help, all_labels, registry=REGISTRY)
    else:
        metric = Histogram(name, help, all_labels, registry=REGISTRY, buckets=spec.buckets or Histogram.DEFAULT_BUCKETS)
    SPECS.append(spec)
    _METRICS[name] = metric
    return metric


def _c(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Counter:
    return _declare("counter", name, help, group, roles, **kw)


def _g(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Gauge:
    return _declare("gauge", name, help, group, roles, **kw)


def _h(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Histogram:
    return _declare("histogram", name, help, group, roles, **kw)


ALL = ROLES
TS, TA, SA, FD, DL, SL = ROLES

# --- process -------------------------------------------------------------------------------------------
ROLE_INFO = _g("afd_role_info", "1 per running role process; `count by (role)` counts replicas.", "process", ALL,
               labels=("version",))
HEARTBEAT = _g("afd_role_heartbeat_timestamp_seconds", "Unix time of the role loop's last iteration (stuck-loop alert).",
               "process", ALL)

# --- teacher server (the embedded local teacher) --------------------------------------------------------
TEACHER_SERVER_REQUESTS = _c("afd_teacher_server_requests_total", "HTTP requests by route and status code.",
                             "teacher server", [TS], labels=("route", "code"))
TEACHER_SERVER_JOBS = _c("afd_teacher_server_jobs_total", "Jobs entering a state.", "teacher server", [TS],
                         labels=("state",), values={"state": ("queued", "succeeded", "failed", "cancelled", "expired")})
TEACHER_SERVER_RUNNING = _g("afd_teacher_server_jobs_running", "Jobs queued or running now (the account's in-flight count).",
                            "teacher server", [TS])
TEACHER_SERVER_RUNNING_PEAK = _g("afd_teacher_server_jobs_running_peak", "High-water mark of in-flight jobs since start "
                                 "(proves the shared quota held between scrapes).", "teacher server", [TS])
TEACHER_SERVER_THROTTLED = _c("afd_teacher_server_throttled_total", "429 responses sent, by limit hit.", "teacher server",
                              [TS], labels=("reason",), values={"reason": ("rate", "concurrency")})
TEACHER_SERVER_FAULTS = _c("afd_teacher_server_faults_injected_total", "Faults injected on demand, by kind.",
                           "teacher server", [TS], labels=("kind",))
TEACHER_SERVER_RENDER = _h("afd_teacher_server_render_seconds", "Time to render one clip.", "teacher server", [TS],
                           buckets=STEP_SECONDS)

# --- teacher actor / gateway ----------------------------------------------------------------------------
TEACHER_ACTOR_JOBS = _c("afd_teacher_actor_jobs_total", "Job events seen by the gateway.", "teacher actor", [TA],
                        labels=("state",), values={"state": JOB_EVENTS})
TEACHER_ACTOR_ERRORS = _c("afd_teacher_actor_errors_total", "Classified teacher errors (teacher.contract.ErrorClass).",
                          "teacher actor", [TA], labels=("error_class",), values={"error_class": ERROR_CLASSES})
TEACHER_ACTOR_THROTTLED = _c("afd_teacher_actor_throttled_total", "HTTP 429 responses received from the teacher.",
                             "teacher actor", [TA])
TEACHER_ACTOR_IN_FLIGHT = _g("afd_teacher_actor_jobs_in_flight", "Jobs this actor has submitted and not finished.",
                             "teacher actor", [TA])
TEACHER_ACTOR_LATENCY = _h("afd_teacher_actor_latency_seconds", "Teacher latency by phase (end_to_end: submit to clip "
                           "cached).", "teacher actor", [TA], labels=("phase",),
                           values={"phase": ("submit", "poll", "download", "end_to_end")}, buckets=TEACHER_SECONDS)
TEACHER_ACTOR_CLIPS = _c("afd_teacher_actor_clips_total", "Teacher clips verified, resampled and cached.",
                         "teacher actor", [TA])
TEACHER_ACTOR_CLIP_BYTES = _c("afd_teacher_actor_download_bytes_total", "Bytes downloaded from the teacher.",
                              "teacher actor", [TA])

# --- quota (shared through Redis; each teacher actor reports what it sees) -----------------------------
QUOTA_IN_FLIGHT = _g("afd_quota_in_flight_jobs", "Account-wide in-flight jobs, read from the shared quota.", "quota", [TA])
QUOTA_IN_FLIGHT_LIMIT = _g("afd_quota_in_flight_limit", "The adaptive (AIMD) in-flight cap now, <= the configured max.",
                           "quota", [TA])
QUOTA_IN_FLIGHT_MAX = _g("afd_quota_in_flight_max", "The configured in-flight ceiling of the account.", "quota", [TA])
QUOTA_CREATE_LIMIT = _g("afd_quota_create_limit_per_second", "The account's job-creation rate cap (jobs/s).", "quota", [TA])
QUOTA_CREATE_BURST = _g("afd_quota_create_burst", "Creates admitted at once above the rate (GCRA burst).", "quota", [TA])
QUOTA_DECREASES = _c("afd_quota_limit_decreases_total", "Multiplicative decreases of the adaptive cap (throttle signals).",
                     "quota", [TA])
QUOTA_GRANTS = _c("afd_quota_grants_total", "Quota grants, by kind (create token, in-flight slot).", "quota", [TA],
                  labels=("kind",), values={"kind": ("create", "slot")})
QUOTA_DENIALS = _c("afd_quota_denials_total", "Quota requests that had to wait, by kind.", "quota", [TA],
                   labels=("kind",), values={"kind": ("create", "slot")})
QUOTA_WAIT = _h("afd_quota_wait_seconds", "Time waiting for a quota grant.", "quota", [TA], buckets=TEACHER_SECONDS)

# --- student actor ---------------------------------------------------------------------------------------
STUDENT_ACTOR_ROLLOUTS = _c("afd_student_actor_rollouts_total", "Rollouts finished and written as pairs.",
                            "student actor", [SA])
STUDENT_ACTOR_FRAMES = _c("afd_student_actor_frames_total", "Frames generated (rate = frames/s).", "student actor", [SA])
STUDENT_ACTOR_ROLLOUT_SECONDS = _h("afd_student_actor_rollout_seconds", "Time per rollout.", "student actor", [SA],
                                   buckets=STEP_SECONDS)
STUDENT_ACTOR_POLICY_VERSION = _g("afd_student_actor_policy_version", "Version of the weights this actor rolls out with.",
                                  "student actor", [SA])
STUDENT_ACTOR_STALENESS = _h("afd_student_actor_staleness", "learner_version − policy_version at rollout start.",
                             "student actor", [SA], buckets=STALENESS_BUCKETS)
STUDENT_ACTOR_WAITS = _c("afd_student_actor_waits_total", "Rollouts postponed, by reason.", "student actor", [SA],
                         labels=("reason",), values={"reason": ("no_teacher_clip", "stale_weights")})

# --- replay and feeder -----------------------------------------------------------------------------------
REPLAY_WRITTEN = _c("afd_replay_pairs_written_total", "Pairs appended to the pair stream.", "replay / feeder", [SA])
REPLAY_READ = _c("afd_replay_pairs_read_total", "Pairs read from the stream by the feeder's consumer group.",
                 "replay / feeder", [FD])
REPLAY_DROPPED = _c("afd_replay_pairs_dropped_total", "Pairs dropped (counted, never silent), by reason.",
                    "replay / feeder", [FD], labels=("reason",), values={"reason": ("stale", "schema", "corrupt")})
REPLAY_LENGTH = _g("afd_replay_stream_length", "Entries in the pair stream (XLEN).", "replay / feeder", [FD])
REPLAY_LAG = _g("afd_replay_consumer_lag", "Entries not yet delivered to the feeder's consumer group.",
                "replay / feeder", [FD])
REPLAY_STALENESS = _h("afd_replay_pair_staleness", "learner_version − policy_version of pairs at admission.",
                      "replay / feeder", [FD], buckets=STALENESS_BUCKETS)
FEEDER_BATCHES = _c("afd_feeder_batches_sent_total", "Batches sent, by learner.", "replay / feeder", [FD],
                    labels=("learner",), values={"learner": ("d-learner", "student-learner")})
FEEDER_CREDITS = _g("afd_feeder_credits", "Credits (batches a learner asked for and has not received), by learner.",
                    "replay / feeder", [FD], labels=("learner",), values={"learner": ("d-learner", "student-learner")})
FEEDER_COLLATE = _h("afd_feeder_collate_seconds", "Time to decode and collate one batch.", "replay / feeder", [FD],
                    buckets=STEP_SECONDS)

# --- discriminator learner -------------------------------------------------------------------------------
D_STEPS = _c("afd_d_learner_steps_total", "Discriminator optimizer steps.", "D learner", [DL])
D_SAMPLES = _c("afd_d_learner_samples_total", "Pairs consumed by the discriminator.", "D learner", [DL])
D_LOSS = _g("afd_d_learner_loss", "Last Bradley–Terry loss L_D (DESIGN.md §2 step 2).", "D learner", [DL])
D_ACCURACY = _g("afd_d_learner_accuracy_ratio", "Fraction of pairs with D(teacher) > D(student), last step.",
                "D learner", [DL])
D_STUDENT_SIGMOID = _g("afd_d_learner_student_sigmoid_ratio", "Mean σ(D(student)) over the last batch.", "D learner", [DL])
D_VERSION = _g("afd_d_learner_version", "Discriminator weight version last published.", "D learner", [DL])
D_STEP_SECONDS = _h("afd_d_learner_step_seconds", "Time per D step.", "D learner", [DL], buckets=STEP_SECONDS)
D_BATCH_WAIT = _h("afd_d_learner_batch_wait_seconds", "Time waiting for a batch from the feeder.", "D learner", [DL],
                  buckets=STEP_SECONDS)
D_BUSY = _g("afd_d_learner_busy_ratio", "Time in D steps ÷ wall time since the first batch (goal ≥ 0.95).",
             "D learner", [DL])

# --- student learner -------------------------------------------------------------------------------------
S_STEPS = _c("afd_student_learner_steps_total", "Student optimizer steps.", "student learner", [SL])
S_SAMPLES = _c("afd_student_learner_samples_total", "Pairs consumed by the student learner.", "student learner", [SL])
S_LOSS = _g("afd_student_learner_loss", "Last loss by term (total = nft + λ·ref; DESIGN.md §2 step 4).",
            "student learner", [SL], labels=("term",), values={"term": ("total", "nft", "ref")})
S_ADVANTAGE = _g("afd_student_learner_advantage", "Advantage statistics of the last batch (before clipping).",
                 "student learner", [SL], labels=("stat",), values={"stat": ("mean", "std", "min", "max")})
S_ADVANTAGE_HIST = _h("afd_student_learner_sample_advantage", "Distribution of per-sample advantages A_c "
                      "(DESIGN.md §2 step 3).", "student learner", [SL], buckets=ADVANTAGE_BUCKETS)
S_VERSION = _g("afd_student_learner_version", "learner_version L: published student updates.", "student learner", [SL])
S_OLD_ETA = _g("afd_student_learner_old_policy_eta_ratio", "η of the θ_old update (DESIGN.md §2 step 5).",
               "student learner", [SL])
S_STEP_SECONDS = _h("afd_student_learner_step_seconds", "Time per student step.", "student learner", [SL],
                    buckets=STEP_SECONDS)
S_BATCH_WAIT = _h("afd_student_learner_batch_wait_seconds", "Time waiting for a batch from the feeder.",
                  "student learner", [SL], buckets=STEP_SECONDS)
S_BUSY = _g("afd_student_learner_busy_ratio", "Time in student steps ÷ wall time since the first batch "
            "(goal ≥ 0.95; the rest is waits: runtime/busy.py).", "student learner", [SL])

# --- weight sync (student learner → student actors; D learner → student learner) -----------------------
_WS_VALUES = {"direction": ("publish", "receive"), "model": ("student", "discriminator")}
WEIGHT_SYNC_SECONDS = _h("afd_weight_sync_seconds", "Time to publish, or to receive+verify+swap, one weight version.",
                         "weight sync", [SA, DL, SL], labels=("direction", "model"), values=_WS_VALUES,
                         buckets=STEP_SECONDS)
WEIGHT_SYNC_BYTES = _c("afd_weight_sync_bytes_total", "Weight bytes sent or received.", "weight sync", [SA, DL, SL],
                       labels=("direction", "model"), values=_WS_VALUES)
WEIGHT_SYNC_UPDATES = _c("afd_weight_sync_updates_total", "Weight versions published or swapped in.", "weight sync",
                         [SA, DL, SL], labels=("direction", "model"), values=_WS_VALUES)
WEIGHT_SYNC_REJECTED = _c("afd_weight_sync_rejected_total", "Received weight versions rejected (hash or schema).",
                          "weight sync", [SA, SL], labels=("model",), values={"model": ("student", "discriminator")})

# GPU series come from GpuCollector (below), declared here so the docs and dashboard checks see them.
GPU_SPECS = (
    MetricSpec("afd_gpu_utilization_ratio", "gauge", "GPU busy fraction (torch.cuda.utilization; needs NVML).",
               "process / GPU", ALL, ("device",), common=False),
    MetricSpec("afd_gpu_memory_used_bytes", "gauge", "Device memory in use (all processes).", "process / GPU", ALL,
               ("device",), common=False),
    MetricSpec("afd_gpu_memory_total_bytes", "gauge", "Device memory size.", "process / GPU", ALL, ("device",),
               common=False),
    MetricSpec("afd_gpu_memory_allocated_bytes", "gauge", "Memory this process's tensors hold (torch allocator).",
               "process / GPU", ALL, ("device",), common=False),
)
SPECS.extend(GPU_SPECS)


class GpuCollector(Collector):
    """Reports GPU utilisation and memory via torch.cuda, and nothing at all without a CUDA device.

    Collected at scrape time, so there is no polling thread and no stale value; torch is never imported
    here, so a process that does not use torch (teacher server, feeder) does not pay for it. Labelled by
    `device` only: Prometheus adds the scrape job (the role) and instance.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = sys.modules.get("torch")
        try:
            # Never initialise CUDA from the scrape thread, and only report devices this process uses: a
            # query on another device would create a CUDA context (hundreds of MB) there.
            if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
                return
            devices = sorted({torch.cuda.current_device()} |
                             {i for i in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(i) > 0})
        except Exception:  # a broken driver must not break the scrape
            return
        fams = {s.name: GaugeMetricFamily(s.name, s.help, labels=["device"]) for s in GPU_SPECS}
        for i in devices:
            lv = [str(i)]
            try:
                free, total = torch.cuda.mem_get_info(i)
                fams["afd_gpu_memory_used_bytes"].add_metric(lv, float(total - free))
                fams["afd_gpu_memory_total_bytes"].add_metric(lv, float(total))
                fams["afd_gpu_memory_allocated_bytes"].add_metric(lv, float(torch.cuda.memory_allocated(i)))
            except Exception:
                pass
            try:
                fams["afd_gpu_utilization_ratio"].add_metric(lv, torch.cuda.utilization(i) / 100.0)
            except Exception:  # no pynvml: utilisation unknown, memory still reported
                pass
        yield from (f for f in fams.values() if f.samples)


@dataclass(frozen=True)
class RoleLabels:
    """The `role`/`actor_id` pair of one role in this process; call it to get a labelled child."""

    role: Role
    actor_id: str

    def __call__(self, metric: Any, **labels: str) -> Any:
        return metric.labels(role=self.role, actor_id=self.actor_id, **labels)

    def beat(self) -> None:
        """Mark one iteration of the role's loop (feeds `afd_role_heartbeat_timestamp_seconds`)."""
        self(HEARTBEAT).set_to_current_time()


def default_actor_id() -> str:
    """`AFD_ACTOR_ID` if set, else `<hostname>-<pid>` (a compose replica's hostname is its container id)."""
    return os.environ.get("AFD_ACTOR_ID") or f"{socket.gethostname()}-{os.getpid()}"


def bind(role: Role, actor_id: Optional[str] = None, *, version: str = "") -> RoleLabels:
    """Label this process as `role` and pre-create the role's series at 0.

    Pre-creating matters: `rate()` over a counter that appears only at its first increment misses that
    increment, and a dashboard panel with no series at all looks like a broken scrape.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    rl = RoleLabels(role, actor_id or default_actor_id())
    rl(ROLE_INFO, version=version or _package_version()).set(1)
    for spec in SPECS:
        if role not in spec.roles or spec.name not in _METRICS or spec.name == "afd_role_info":
            continue
        if all(lbl in spec.values for lbl in spec.labels):
            for combo in itertools.product(*(spec.values[lbl] for lbl in spec.labels)):
                rl(_METRICS[spec.name], **dict(zip(spec.labels, combo)))
    return rl


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("afd_async")
    except Exception:
        return "unknown"


def default_port(role: Role) -> int:
    """The metrics port `role` uses when `cluster.metrics_port` is unset (table in docs/METRICS.md)."""
    return DEFAULT_METRICS_PORTS[role]


def port_block(role: Role) -> tuple[int, int]:
    """First and last metrics port replicas of `role` may take under host networking (up to the next role's)."""
    base = DEFAULT_METRICS_PORTS[role]
    higher = [p for p in DEFAULT_METRICS_PORTS.values() if p > base]
    return base, min(min(higher, default=base + PORT_BLOCK), base + PORT_BLOCK) - 1


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds must not flood logs
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scraper must not keep the process alive


_SERVERS: list[WSGIServer] = []
_GPU_COLLECTOR: Optional[GpuCollector] = None


def start_metrics_server(port: int, host: str = "127.0.0.1", *, tries: int = 1, port_file: Optional[str] = None) -> int:
    """Serve `REGISTRY` at `http://host:port/metrics` from a daemon thread; return the bound port.

    Args:
        port: 0 picks a free port (tests); otherwise the role's port.
        host: bind address: 127.0.0.1 by default, 0.0.0.0 in a compose bridge network so Prometheus can reach it.
        tries: try `port`, `port+1`, ... this many ports; scaled replicas sharing a host network take the next
            free one of their role's block (Prometheus scrapes the whole block).
        port_file: where to write the bound port for the container health check
            (`python -m afd_async.metrics check`); default `$AFD_METRICS_PORT_FILE`, if set.
    """
    global _GPU_COLLECTOR
    if _GPU_COLLECTOR is None:
        _GPU_COLLECTOR = GpuCollector()
        REGISTRY.register(_GPU_COLLECTOR)
    last_error: Optional[OSError] = None
    for candidate in range(port, port + max(1, tries)) if port else [0]:
        try:
            httpd = make_server(host, candidate, make_wsgi_app(REGISTRY), _ThreadingServer, handler_class=_QuietHandler)
            break
        except OSError as e:
            last_error = e
    else:
        raise OSError(f"no free metrics port in {port}..{port + tries - 1} on {host}: {last_error}")
    threading.Thread(target=httpd.serve_forever, name=f"metrics:{httpd.server_port}", daemon=True).start()
    _SERVERS.append(httpd)
    port_file = port_file or os.environ.get("AFD_METRICS_PORT_FILE")
    if port_file:
        with open(port_file, "w") as f:
            f.write(str(httpd.server_port))
    return httpd.server_port


def start_role_metrics(role: Role, *, port: Optional[int] = None, host: str = "127.0.0.1", tries: int = 1,
                       actor_id: Optional[str] = None) -> tuple[RoleLabels, int]:
    """What a role's entry point calls first: `bind(role)` + `start_metrics_server` on the role's port.

    Args mirror `cluster.metrics_port` (None: the role's default port), `cluster.host` and
    `cluster.metrics_port_tries`. Returns the role's labels and the bound port.
    """
    labels = bind(role, actor_id)
    return labels, start_metrics_server(default_port(role) if port is None else port, host, tries=tries)


def stop_metrics_servers() -> None:
    """Stop every server `start_metrics_server` started (tests; processes just exit)."""
    while _SERVERS:
        srv = _SERVERS.pop()
        srv.shutdown()
        srv.server_close()


def spec(name: str) -> MetricSpec:
    """The declaration of `name` (KeyError if undeclared)."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def exported_series() -> dict[str, MetricSpec]:
    """Every series name a scrape of an afd role can show, mapped to its declaration."""
    return {series: s for s in SPECS for series in s.series()}


def render_markdown() -> str:
    """The metric and port tables of `docs/METRICS.md` (a test keeps the committed file equal to this)."""
    out = [
        "# Metrics", "",
        "Generated from `afd_async/metrics.py` by `python -m afd_async.metrics render > docs/METRICS.md`; do not edit.",
        "", f"Every series carries `{'`, `'.join(COMMON_LABELS)}` unless marked *(no role labels)*; "
        "counters also export `<name minus _total>_created`, histograms `_bucket`, `_sum`, `_count`.",
        "", "## Ports", "", "| Role | Command | Default metrics port | Replica block (host networking) |",
        "|---|---|---|---|",
    ]
    for role, port in DEFAULT_METRICS_PORTS.items():
        lo, hi = port_block(role)
        out.append(f"| {role} | `afd {role}` | {port} | {lo}–{hi} |")
    group = None
    for s in SPECS:
        if s.group != group:
            group = s.group
            out += ["", f"## {group}", "", "| Metric | Type | Labels | Roles | Meaning |", "|---|---|---|---|---|"]
        labels = ", ".join(f"`{lbl}`" + (f" ({'/'.join(s.values[lbl])})" if lbl in s.values else "") for lbl in s.labels)
        if not s.common:
            labels += " *(no role labels)*"
        roles = "all" if s.roles == ROLES else ", ".join(s.roles)
        out.append(f"| `{s.name}` | {s.kind} | {labels or '–'} | {roles} | {s.help.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def _check(port: Optional[int], port_file: Optional[str], host: str, timeout_s: float) -> int:
    """Container health check: 0 when this container's metrics endpoint answers."""
    import urllib.request

    if port is None:
        path = port_file or os.environ.get("AFD_METRICS_PORT_FILE", "/tmp/afd-metrics.port")
        try:
            port = int(open(path).read().strip())
        except (OSError, ValueError) as e:
            print(f"no metrics port yet ({path}: {e})", file=sys.stderr)
            return 1
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as r:
            return 0 if r.status == 200 and b"afd_role_info" in r.read() else 1
    except OSError as e:
        print(f"metrics endpoint {host}:{port} not answering: {e}", file=sys.stderr)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m afd_async.metrics render` prints docs/METRICS.md; `... check [--port N]` is the health check."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m afd_async.metrics", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("render", help="print the metric tables (docs/METRICS.md)")
    chk = sub.add_parser("check", help="exit 0 if this container's metrics endpoint answers")
    chk.add_argument("--port", type=int, default=None, help="default: the port in $AFD_METRICS_PORT_FILE")
    chk.add_argument("--port-file", default=None)
    chk.add_argument("--host", default="127.0.0.1")
    chk.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.cmd == "render":
        sys.stdout.write(render_markdown())
        return 0
    return _check(args.port, args.port_file, args.host, args.timeout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
