"""Property tests of every teacher adapter's response parsing, through a real HTTP server.

One loopback server answers every request with whatever the current example
sets (status, body bytes). Whatever a provider sends back (valid JSON of any
shape, or garbage), `submit`, `poll`, `cancel` and `find_job` either return the
contract's types or raise `TeacherError`; nothing else may escape, since the
gateway classifies only `TeacherError` (anything else would look like a Redis
outage and leave a paid create ambiguous).
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from afd_async.config.providers import PROVIDERS
from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import JobHandle, JobRequest, JobState, JobStatus, TeacherError

REQUEST = JobRequest(prompt="a red ball falls", seed=3, model="owner/model")


class Junk:
    """The current reply of the junk server."""

    status = 200
    body = b"{}"


class _Handler(BaseHTTPRequestHandler):
    """Answers every method and path with `Junk`; one buffered write per reply (no Nagle stalls)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16

    def _reply(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(Junk.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(Junk.body)))
        self.end_headers()
        self.wfile.write(Junk.body)

    do_GET = do_POST = do_DELETE = do_PUT = _reply

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[asyncio.AbstractEventLoop, dict[str, Any]]]:
    loop = asyncio.new_event_loop()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    clients = {}
    for name in sorted(PROVIDERS):
        creds = {"access_key": "ak", "secret_key": "s" * 32} if name == "kling" else {"api_key": "k" * 16}
        clients[name] = make_client(name, base_url=url, credentials=creds, timeout_s=5.0,
                                    model="owner/model", get_attempts=1, retry_wait_s=0.001)
    yield loop, clients
    for c in clients.values():
        loop.run_until_complete(c.aclose())
    loop.close()
    server.shutdown()
    server.server_close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=16,
)
# Keys the adapters look for, so generated maps reach deep into the parsers.
_KEYS = ["id", "task_id", "request_id", "status", "state", "progress", "error", "code", "message", "data",
         "output", "video", "url", "assets", "failure", "failureCode", "task_status", "task_result", "videos",
         "content", "video_url", "created_at", "createdAt", "usage", "seed", "prompt", "model", "status_url",
         "response_url", "cancel_url", "logs", "detail", "type", "failure_reason", "urls", "metrics", "generations"]
shaped = st.recursive(
    json_values,
    lambda inner: st.dictionaries(st.sampled_from(_KEYS), inner, max_size=6) | st.lists(inner, max_size=3),
    max_leaves=24,
)
_STATES = st.sampled_from(["queued", "in_progress", "completed", "failed", "succeeded", "SUCCEEDED", "FAILED",
                           "succeed", "running", "processing", "COMPLETED", "IN_QUEUE", "dreaming", "canceled",
                           "expired", "PENDING", "THROTTLED", 3, None])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "shaped", "stateful", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "stateful":  # a plausible status map with one field of the wrong type/shape
        v = {k: draw(shaped) for k in draw(st.lists(st.sampled_from(_KEYS), max_size=6))}
        for k in ("status", "state", "task_status"):
            v[k] = draw(_STATES)
        v.setdefault("id", draw(shaped))
        if draw(st.booleans()):
            v = {"data": v, "code": draw(st.sampled_from([0, 1, 1102, "0", None]))}
        return json.dumps(v).encode()
    return json.dumps(draw(json_values if kind == "json" else shaped)).encode()


def _check(loop: asyncio.AbstractEventLoop, client: Any, status: int, body: bytes) -> None:
    Junk.status, Junk.body = status, body
    handle = JobHandle(provider=client.provider, job_id="job-1", model="owner/model",
                       extra={"status_url": "/s", "response_url": "/r", "cancel_url": "/c"})

    async def calls() -> None:
        for name, aw in (("submit", client.submit(REQUEST)), ("poll", client.poll(handle)),
                         ("cancel", client.cancel(handle)),
                         ("find_job", client.find_job(REQUEST, since=0.0) if hasattr(client, "find_job") else None)):
            if aw is None:
                continue
            try:
                out = await aw
            except TeacherError:
                continue
            except Exception as e:  # noqa: BLE001 - the property under test
                raise AssertionError(f"{client.provider}.{name} raised {type(e).__name__}: {e} "
                                     f"on HTTP {status} {body[:200]!r}") from e
            if name == "submit":
                assert isinstance(out, JobHandle) and isinstance(out.job_id, str) and out.job_id, out
            elif name == "poll":
                assert isinstance(out, JobStatus) and isinstance(out.state, JobState), out
                assert out.progress is None or 0.0 <= out.progress <= 1.0 or out.progress != out.progress, out
            elif name == "find_job":
                assert out is None or (isinstance(out, JobHandle) and out.job_id), out

    loop.run_until_complete(calls())


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=bodies(), status=st.sampled_from([200, 200, 200, 201, 202, 400, 404, 409, 422, 429, 500, 503]))
# Progress out of range ("-1" for unknown, over 100 %) once failed the poll contract in CI: pinned here.
@example(body=b'{"id": null, "progress": -1, "status": "queued", "state": "queued", "task_status": "queued"}', status=200)
@example(body=b'{"id": "j", "progress": 250, "status": "in_progress", "state": "RUNNING", "task_status": "running"}',
         status=200)
def test_any_response_gives_contract_types_or_teacher_error(served, provider: str, body: bytes, status: int) -> None:
    loop, clients = served
    _check(loop, clients[provider], status, body)


def test_malformed_create_is_ambiguous_and_malformed_poll_is_transient(served) -> None:
    """A 2xx create with no readable job id may still have made a (paid) job: ambiguous, so the
    gateway looks it up or counts a possible duplicate; an unreadable poll is just retried."""
    from afd_async.teacher.adapters import AmbiguousSubmitError
    from afd_async.teacher.contract import ErrorClass

    loop, clients = served
    for provider, client in clients.items():
        Junk.status, Junk.body = 200, b'{"id": ""}'
        with pytest.raises(AmbiguousSubmitError, match="malformed response"):
            loop.run_until_complete(client.submit(REQUEST))
        Junk.body = b"[1, 2"
        with pytest.raises(TeacherError) as info:
            loop.run_until_complete(client.poll(JobHandle(provider=client.provider, job_id="j", model="m")))
        assert info.value.error_class is ErrorClass.TRANSIENT, (provider, str(info.value))
