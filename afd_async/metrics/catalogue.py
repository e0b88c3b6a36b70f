"""The catalogue: every Prometheus metric afd_async exports, declared once (DESIGN.md §1, STYLE.md "Metrics").

Why one list: the dashboard (`ops/grafana/dashboards/afd.json`), the alert queries and the table in
`docs/METRICS.md` are checked against these declarations, so a metric that is not declared here does not exist.
Declaration order is the order of the docs tables (grouped by `group`).

Naming: `afd_<component>_<quantity>_<unit>`, base units (seconds, bytes, ratio), `_total` for counters,
histograms for latencies; `declare._declare` enforces the prefix and the counter suffix.
"""

from __future__ import annotations

from afd_async.metrics.declare import ROLES, SPECS, MetricSpec, _c, _g, _h

# Buckets, in base units. Teacher APIs take minutes; learner steps and weight syncs take ms to seconds.
TEACHER_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)
STEP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STALENESS_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)
ADVANTAGE_BUCKETS = (-5, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 5)

JOB_EVENTS = ("submitted", "succeeded", "failed", "cancelled", "expired", "retried", "ambiguous", "dead_lettered",
              "cache_hit")
# the values of `teacher.contract.ErrorClass` (metrics sit below teacher; tests/ops/test_metrics.py checks they agree)
ERROR_CLASSES = ("rate_limited", "concurrency_full", "transient", "quota_exhausted", "content_rejected", "invalid", "auth",
                 "corrupt_result", "expired_result")


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
TEACHER_ACTOR_CALLBACKS = _c("afd_teacher_actor_callbacks_total", "Completion callbacks (teacher.callback): completed = a "
                            "signed callback ended the job, woke = a callback woke a poll, missed = none came within "
                            "fallback_poll_s, so the gateway polled.", "teacher actor", [TA], labels=("outcome",),
                            values={"outcome": ("completed", "woke", "missed")})
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
D_PROBE = _g("afd_d_learner_probe_ratio", "D probes on held-out teacher clips (DESIGN.md §2 step 2): fraction D "
             "ranks above the clip shuffled in time, reversed, with frames dropped, or scored for another prompt "
             "(0.5 = chance; train.d_probe_every).", "D learner", [DL], labels=("probe",),
             values={"probe": ("shuffled", "reversed", "frame_drop", "prompt_swap")})
D_PROBE_RHO = _g("afd_d_learner_probe_rho_physics", "Spearman ρ(D score, −true physics error) of the student clips D "
                 "scored since the last probe (issue 15.2; +1 = D ranks them as the ground truth does, goal ≥ 0.3); "
                 "only with the embedded renderer teacher (train.d_probe_every).", "D learner", [DL])
D_PROBE_RHO_HELDOUT = _g("afd_d_learner_probe_rho_physics_heldout", "The same ρ for D's scores of each batch taken "
                         "before D's first step on it: student rollouts D has not trained on (issue 15.2's held-out "
                         "test; goal ≥ 0.3).", "D learner", [DL])

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

# GPU series come from GpuCollector (gpu.py), declared here so the docs and dashboard checks see them.
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
