"""Kling adapter against its emulator (JWT verified server-side), through real sockets."""

from __future__ import annotations

import time

import jwt
import pytest
from emulators import harness as h
from emulators.kling import ARREARS, ERRORS, KlingEmulator

from afd_async.teacher.adapters import make_client
from afd_async.teacher.adapters.kling import make_token
from afd_async.teacher.contract import ErrorClass, JobState

pytestmark = pytest.mark.anyio
AK, SK = "ak-TEST-ACCESS-7c1d", "sk-TEST-SECRET-9e8f7a6b-0123456789abcdef"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with KlingEmulator(access_key=AK, secret_key=SK) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()

    def _make(access_key: str = AK, secret_key: str = SK, **kw):
        args = dict(base_url=emu.url, credentials={"access_key": access_key, "secret_key": secret_key}, timeout_s=5.0, model="kling-v1-6", retry_wait_s=0.01)
        return make_client("kling", **{**args, **kw})

    return _make


def test_jwt_claims():
    now = 1_700_000_000.0
    claims = jwt.decode(make_token(AK, SK, now=now), SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": AK, "exp": int(now) + 1800, "nbf": int(now) - 5}
    assert jwt.get_unverified_header(make_token(AK, SK)) == {"alg": "HS256", "typ": "JWT"}


async def test_success(make, emu):
    status = await h.check_success(make, emu)
    assert status.usage == {"duration_s": 5.1}
    body = next(iter(emu.jobs.values())).body
    assert body["model_name"] == "kling-v1-6" and body["duration"] == "5" and body["external_task_id"].startswith("afd-")
    assert emu.claims and emu.claims[0]["iss"] == AK


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [AK, SK])


async def test_arrears_is_quota_not_retryable(make, emu):
    emu.inject("create", *ARREARS)
    async with make() as client:
        err = await h.expect(client.submit(h.REQUEST), ErrorClass.QUOTA_EXHAUSTED)
    assert err.provider_code == "1101" and not err.error_class.retryable


async def test_error_code_on_http_200(make, emu):
    emu.inject("create", 200, {"code": 1303, "message": "parallel task limit", "request_id": "r"})
    async with make() as client:
        await h.expect(client.submit(h.REQUEST), ErrorClass.CONCURRENCY_FULL)


async def test_auth_wrong_secret(make, emu):
    await h.check_auth(make, emu, [AK, "sk-WRONG-SECRET-123456-0123456789abcdef"], secret_key="sk-WRONG-SECRET-123456-0123456789abcdef")


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_concurrency_cap(make, emu):
    await h.check_concurrency_cap(make, emu)


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit_and_find_job(make, emu):
    await h.check_ambiguous(make, emu, lookup=True)


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel_is_a_logged_no_op(make, emu):
    async with make() as client:
        handle = await client.submit(h.REQUEST)
        await client.cancel(handle)
        assert (await client.poll(handle)).state in (JobState.RUNNING, JobState.SUCCEEDED)


async def test_token_is_cached(make, emu):
    async with make() as client:
        await client.submit(h.REQUEST)
        await client.submit(h.REQUEST)
    assert emu.requests[0][2]["authorization"] == emu.requests[1][2]["authorization"]
    assert time.time() < emu.claims[0]["exp"]


async def test_jwt_echoed_by_server_is_redacted(make, emu, caplog):
    async with make() as client:
        token = client._auth_headers()["Authorization"][7:]
        emu.inject("create", 401, {"code": 1002, "message": f"Authorization is invalid: {token} (iss {AK}, secret {SK})"})
        with caplog.at_level("DEBUG", logger="afd_async.teacher.adapters"):
            err = await h.expect(client.submit(h.REQUEST), ErrorClass.AUTH)
    h.assert_redacted(err, [token, AK, SK])
    assert token not in caplog.text and SK not in caplog.text
