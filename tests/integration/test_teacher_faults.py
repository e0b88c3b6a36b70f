"""Every fault the local server can inject, and no prompt is lost.

Request faults (429 storm, 500, hang → client timeout) are forced with prompt
markers on dedicated prompts and also drawn at random on every request; job
faults (truncated / corrupt MP4, expired URL, wrong size / fps / length) are
drawn per job with a seed (31) chosen so each class fires within the first 14 jobs
(`random.Random(f"{seed}:{job_seq}")` depends only on the job's sequence
number); content rejection, decode bombs and oversized results are forced by
marker. Outcome rule: a content rejection ends on the dead-letter stream with
its reason at once, a result that can never be accepted (bomb, oversized) after
`max_attempts` fresh jobs, everything else ends as a clip in the cache.

Fault class → where it is handled → tests (this file unless named):

| fault | handled in | tests |
|---|---|---|
| 429 storm / concurrency full | adapter → RATE_LIMITED/CONCURRENCY_FULL + Retry-After; `gateway._submit` retries, `quota.on_throttle` (shared AIMD + pause) | every_fault (marker + drawn); test_gateway throttles, scaling |
| 5xx | TRANSIENT; a create is ambiguous → `find_job` or counted possible duplicate; polls retried | every_fault; test_gateway transient_create_*, transient_poll |
| hung / slow response | `gateway._call` timeout → TRANSIENT; `job_timeout_s` → cancel, fresh job | every_fault (hang 1.5 s > call timeout 0.7 s) |
| truncated / corrupt MP4 | `video.probe` box tiling, `decode_mp4` (err_detect, frame count) → CORRUPT_RESULT → re-download, fresh job | every_fault; test_codec; test_gateway corrupt_result; test_mp4_probe_props |
| wrong size / fps | `actor.make_decoder` resamples to the student; provider's own in `teacher_meta.source` | every_fault (clips at student size) |
| wrong length | `resample` ClipTooShortError → CORRUPT_RESULT → fresh job | every_fault |
| oversized payload | adapter download cap (Content-Length, then streamed count) → CORRUPT_RESULT | oversized_and_bombs; emulators/harness max_bytes |
| decode bomb | `probe_mp4` + `check_declared` (size, frames, frames × pixels) before FFmpeg; FFmpeg `max_pixels` at open | oversized_and_bombs; test_bad_input_video; test_codec |
| download keeps failing (paid job) | `gateway._download_and_decode` → JobDeferred, record kept "submitted": re-polled by id on resume | paid_result_… |
| expired result URL | adapter 403/404/410 → EXPIRED_RESULT → fresh job | every_fault; test_gateway failed_job_and_expired; test_teacher_server result_expires |
| content rejection / invalid | CONTENT_REJECTED / INVALID → dead-letter at once, never retried | every_fault; test_gateway poison_prompts |
| auth / quota exhausted | halt + account alert on the dead stream; journal stays resumable | test_gateway account_failures_halt |
| malformed provider reply | `adapters._http` guard → ambiguous create / TRANSIENT poll | test_teacher_parsers_props |
| bad queue record | `actor._next` → dead-letter with reason and raw bytes, acked | bad_queue_records; test_teacher_records_props |
"""

from __future__ import annotations

from test_teacher_actor import (  # noqa: F401 (teacher: a fixture)
    dead_letters, have_clips, make_cfg, prompts, push, run_actor_until, teacher,
)

from afd_async.teacher.clips import CacheClipStore, teacher_clip_key
from afd_async.teacher.server_faults import JOB_FAULTS, REQUEST_FAULTS

DRAWN = ("content_policy", "truncated_mp4", "corrupt_mp4", "expired_url", "wrong_size", "wrong_fps", "wrong_length")
assert set(DRAWN) | {"decode_bomb", "oversized"} == set(JOB_FAULTS)  # those two: by marker, in the next test
FAULTS = [
    "teacher.server.faults.seed=31", "teacher.server.faults.rate_limit=0.04", "teacher.server.faults.server_error=0.04",
    "teacher.server.faults.hang=0.02", "teacher.server.faults.hang_s=1.5", "teacher.server.faults.retry_after_s=0.2",
    *[f"teacher.server.faults.{n}=0.06" for n in
      ("truncated_mp4", "corrupt_mp4", "expired_url", "wrong_size", "wrong_fps", "wrong_length")],
    "teacher.server.render_latency_s=0.2", "teacher.server.max_in_flight=6",
]


def test_every_fault_injected_and_no_prompt_lost(redis_server, redis_client, teacher):
    srv = teacher(*FAULTS)
    cfg = make_cfg(redis_server.url, srv.port, "teacher.concurrency=4", "teacher.gateway.call_timeout_s=0.7",
                   "teacher.gateway.max_attempts=10", "teacher.gateway.submit_attempts=10",
                   "teacher.quota.max_in_flight=6", "teacher.quota.create_rate_per_min=1200")
    base = prompts(20)
    storm = [f"[fault:rate_limit:4] {base[0]}", f"[fault:server_error:3] {base[1]}", f"[fault:hang:1] {base[2]}"]
    rejected = [f"[fault:content_policy] {base[3]}", f"[fault:content_policy] {base[4]}"]
    normal = base[5:]
    texts = storm + normal + rejected  # rejections last: jobs 1..14 take the seeded draws
    push(redis_client, texts)

    def settled() -> bool:
        return have_clips(redis_client, cfg, storm + normal) == len(storm + normal) and \
            len(dead_letters(redis_client)) >= len(rejected)

    report = run_actor_until(cfg, settled, 150)
    stats = srv.stats()
    injected = stats["faults_injected"]
    assert all(injected[name] > 0 for name in REQUEST_FAULTS + DRAWN), injected  # every drawn class fired

    for p in storm + normal:  # every non-rejected prompt became a clip at the student's size
        clip = CacheClipStore(redis_client).get(teacher_clip_key(cfg.teacher, p, 0))  # TeacherClipMissing if none
        assert tuple(clip.frames.shape) == (cfg.student.num_frames, cfg.student.height, cfg.student.width, 3)
    dead = dead_letters(redis_client)
    assert sorted(d["prompt"] for d in dead) == sorted(rejected), dead  # and only rejections were dead-lettered
    assert {d["error_class"] for d in dead} == {"content_rejected"} and all(d["reason"] for d in dead)
    assert report.done == len(storm + normal) and report.dead == len(rejected) and report.halted is None
    assert redis_client.llen("afd:teacher:queue") == 0 and not redis_client.keys("afd:teacher:processing:*")
    journal = {k.decode(): int(v) for k, v in redis_client.hgetall("afd:teacher:journal:stats").items()}
    assert journal["failed"] >= 1  # bad renders and expired URLs were retried as fresh jobs


def test_oversized_results_and_decode_bombs_are_dead_lettered_with_their_reason(redis_server, redis_client, teacher):
    """A result over the download cap is refused from its Content-Length (nothing read), a decode
    bomb from its container header (nothing decoded); each try is a fresh job, and once the attempts
    are spent the prompt is dead-lettered with the cause, while the other prompts flow past it."""
    srv = teacher("teacher.server.render_latency_s=0.05")
    cfg = make_cfg(redis_server.url, srv.port, "teacher.concurrency=3", "teacher.gateway.max_attempts=2",
                   "teacher.gateway.download_attempts=1", "teacher.decode.max_bytes=4194304")
    base = prompts(6)
    poison = [f"[fault:oversized] {base[0]}", f"[fault:decode_bomb] {base[1]}"]
    normal = base[2:]
    push(redis_client, poison + normal)

    def settled() -> bool:
        return have_clips(redis_client, cfg, normal) == len(normal) and len(dead_letters(redis_client)) >= 2

    report = run_actor_until(cfg, settled, 90)
    dead = {d["prompt"]: d for d in dead_letters(redis_client)}
    assert set(dead) == set(poison), dead
    assert all(d["error_class"] == "attempts_exhausted" for d in dead.values())
    assert "over max_bytes=4194304" in dead[poison[0]]["reason"], dead[poison[0]]
    assert "declared size 4096x4096 exceeds the cap" in dead[poison[1]]["reason"], dead[poison[1]]
    assert report.done == len(normal) and report.dead == 2 and report.halted is None
    stats = srv.stats()
    assert stats["faults_injected"]["oversized"] == 2 and stats["faults_injected"]["decode_bomb"] == 2  # 2 attempts each
    # Nothing paid for is lost: every completed job with a usable video became a clip.
    journal = {k.decode(): int(v) for k, v in redis_client.hgetall("afd:teacher:journal:stats").items()}
    assert stats["jobs"]["completed"] - 4 == journal["done"] == len(normal), (stats["jobs"], journal)
    assert redis_client.llen("afd:teacher:queue") == 0 and not redis_client.keys("afd:teacher:processing:*")


def test_bad_queue_records_are_dead_lettered_with_their_bytes_and_never_block(redis_server, redis_client, teacher):
    """Foreign msgpack, a future schema, garbage and a record without a prompt: each is acked onto
    the dead-letter stream with its reason and its bytes (an operator can repair and re-queue it),
    and the good prompts around them are served."""
    import msgpack

    srv = teacher("teacher.server.render_latency_s=0.05")
    cfg = make_cfg(redis_server.url, srv.port, "teacher.concurrency=2")
    good = prompts(3)
    bad = {b"\xc1\xff garbage": "not msgpack",
           msgpack.packb({"schema": 2, "prompt": good[0], "seed": 0}): "schema 2",
           msgpack.packb([1, 2, 3]): "schema None",
           msgpack.packb({"schema": 1, "prompt": "  ", "seed": 0}): "non-empty str prompt",
           msgpack.packb({"schema": 1, "prompt": good[1], "seed": "7"}): "int seed"}
    redis_client.lpush("afd:teacher:queue", *bad)
    push(redis_client, good)

    def settled() -> bool:
        return have_clips(redis_client, cfg, good) == len(good) and redis_client.xlen("afd:teacher:dead") >= len(bad)

    from afd_async import metrics as M

    labels = M.RoleLabels("teacher-actor", "bad-records-test")
    report = run_actor_until(cfg, settled, 60, metrics=labels)
    dead = dead_letters(redis_client)
    assert report.bad_records == len(bad) and report.done == len(good) and report.halted is None
    assert labels(M.TEACHER_ACTOR_JOBS, state="dead_lettered")._value.get() == len(bad)  # the counted metric
    by_raw = {bytes.fromhex(d["raw_hex"]): d for d in dead}
    assert set(by_raw) == set(bad)
    for raw, fragment in bad.items():
        d = by_raw[raw]
        assert d["error_class"] == "bad_record" and fragment in d["reason"], d
        assert int(d["raw_bytes"]) == len(raw)
    assert redis_client.llen("afd:teacher:queue") == 0 and not redis_client.keys("afd:teacher:processing:*")


def test_a_paid_result_whose_download_keeps_failing_is_fetched_on_resume_not_bought_again(redis_server):
    """Transient download failures after the job succeeded: the gateway defers (journal stays
    "submitted" with the job id) and the next run re-polls that job and downloads it; one create."""
    import pytest

    from afd_async.teacher.contract import ErrorClass, JobRequest
    from afd_async.teacher.gateway_errors import JobDeferred
    from test_gateway_fakes import make_gateway, run

    req = JobRequest(prompt="a blue ball slides left", seed=4, model="m")

    async def main() -> None:
        gw, fake = make_gateway(redis_server.client_kwargs(), download_attempts=2)
        await fake.inject("download", ErrorClass.TRANSIENT, times=2)
        with pytest.raises(JobDeferred, match="not downloaded yet"):
            await gw.run_job(req)
        rec = await gw.journal.get(gw.journal.key("fake", req, 0))
        assert rec.state == "submitted" and rec.handle is not None
        entry = await gw.run_job(req)  # resumes the same job by id
        assert entry.prompt == req.prompt and entry.meta.job_id == rec.handle.job_id
        assert await fake.counter("submits") == 1 and await fake.r.llen("fake:inject:download") == 0  # both failed
        assert (await gw.quota.snapshot())["in_flight"] == 0  # the resumed lease was released too

    run(main())
