"""Kling specifics against its emulator (JWT verified server-side); the contract checks are in test_adapter_contract.py."""

from __future__ import annotations

import time

import jwt
import pytest
from emulators import harness as h
from emulators.kling import ARREARS
from emulators.providers import KLING_AK as AK
from emulators.providers import KLING_SK as SK
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.adapters.kling import make_token
from afd_async.teacher.contract import ErrorClass

pytestmark = pytest.mark.anyio
provider = provider_fixture("kling")


def test_jwt_claims():
    now = 1_700_000_000.0
    claims = jwt.decode(make_token(AK, SK, now=now), SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": AK, "exp": int(now) + 1800, "nbf": int(now) - 5}
    assert jwt.get_unverified_header(make_token(AK, SK)) == {"alg": "HS256", "typ": "JWT"}


async def test_arrears_is_quota_not_retryable(make, emu):
    emu.inject("create", *ARREARS)
    async with make() as client:
        err = await h.expect(client.submit(h.REQUEST), ErrorClass.QUOTA_EXHAUSTED)
    assert err.provider_code == "1101" and not err.error_class.retryable


async def test_error_code_on_http_200(make, emu):
    emu.inject("create", 200, {"code": 1303, "message": "parallel task limit", "request_id": "r"})
    async with make() as client:
        await h.expect(client.submit(h.REQUEST), ErrorClass.CONCURRENCY_FULL)


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
