"""Shared adapter plumbing: hints, redaction, credentials, the registry."""

from __future__ import annotations

import logging
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afd_async.config.providers import PROVIDERS
from afd_async.teacher.adapters import make_client, request_key, supports_find_job
from afd_async.teacher.adapters._http import Redactor, class_for_status, parse_duration, parse_retry_after, retry_hint
from afd_async.teacher.contract import ErrorClass, JobRequest, TeacherClient
from afd_async.config.credentials import CredentialError, Secret, load_secret, load_teacher_credentials

SECRET = "sk-live-REDACT-ME-1234567890"


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=784111777.0 - 30) == pytest.approx(30.0)
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=784111777.0 + 30) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_rate_limit_headers():
    assert parse_duration("6m0s") == 360.0 and parse_duration("20ms") == 0.02 and parse_duration("1h2m") == 3720.0
    assert parse_duration("6x") is None
    assert retry_hint({"retry-after-ms": "1500"}) == 1.5
    assert retry_hint({"x-ratelimit-reset-requests": "0.500s"}) == 0.5
    assert retry_hint({"x-ratelimit-reset": "1000000030"}, now=1_000_000_000.0) == 30.0
    assert retry_hint({"x-ratelimit-reset": "7"}) == 7.0
    assert retry_hint({"retry-after": "3", "x-ratelimit-reset": "9"}) == 3.0
    assert retry_hint({}) is None


@pytest.mark.parametrize("status,cls", [(401, ErrorClass.AUTH), (403, ErrorClass.AUTH), (402, ErrorClass.QUOTA_EXHAUSTED),
                                        (429, ErrorClass.RATE_LIMITED), (500, ErrorClass.TRANSIENT), (504, ErrorClass.TRANSIENT),
                                        (400, ErrorClass.INVALID), (422, ErrorClass.INVALID)])
def test_status_fallback(status, cls):
    assert class_for_status(status) is cls


def test_redactor_patterns():
    r = Redactor([SECRET])
    text = r(f"Authorization: Bearer abcdefghijklmnop; key={SECRET}; jwt eyJhbGciOiJI.eyJpc3MiOiJh.c2lnbmF0dXJl; ?api_key=zz&x=1")
    assert SECRET not in text and "abcdefghijklmnop" not in text and "eyJhbGciOiJI" not in text and "zz&" not in text
    assert "x=1" in text


@settings(max_examples=50, deadline=None)
@given(prefix=st.text(max_size=30), suffix=st.text(max_size=30))
def test_redactor_never_leaks_registered_secret(prefix, suffix):
    assert SECRET not in Redactor([SECRET])(prefix + SECRET + suffix)


def test_secret_is_masked_everywhere(caplog):
    s = Secret(SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in f"{s}" and SECRET not in f"{s!r:>40}"
    assert s == SECRET and s.reveal() == SECRET and len(s) == len(SECRET)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key %s %r", s, {"k": s})
    assert SECRET not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_load_secret_env_and_file(tmp_path):
    f = tmp_path / "key"
    f.write_text(SECRET + "\n")
    assert load_secret("X", env={"X": "abc"}).reveal() == "abc"
    assert load_secret("X", env={"X_FILE": str(f)}).reveal() == SECRET
    with pytest.raises(CredentialError, match="both"):
        load_secret("X", env={"X": "a", "X_FILE": str(f)})
    with pytest.raises(CredentialError) as info:
        load_secret("X", env={"X_FILE": str(tmp_path / "missing")})
    assert "X_FILE" in str(info.value)
    assert load_secret("X", env={}, required=False) is None


def test_load_teacher_credentials(tmp_path):
    f = tmp_path / "sk"
    f.write_text("kling-secret")
    creds = load_teacher_credentials("kling", env={"AFD_TEACHER_ACCESS_KEY": "ak", "KLING_SECRET_KEY_FILE": str(f)})
    assert creds["access_key"].reveal() == "ak" and creds["secret_key"].reveal() == "kling-secret"
    assert load_teacher_credentials("fal", env={"FAL_KEY": "fk"})["api_key"].reveal() == "fk"
    assert load_teacher_credentials("replicate", env={"AFD_TEACHER_API_KEY": "g", "REPLICATE_API_TOKEN": "r"})["api_key"].reveal() == "g"
    assert load_teacher_credentials("local", env={}) == {}
    with pytest.raises(CredentialError, match="ARK_API_KEY"):
        load_teacher_credentials("byteplus", env={})


async def _close(c):
    await c.aclose()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_registry_builds_every_provider(provider):
    import asyncio

    creds = {"access_key": "ak", "secret_key": "s" * 32} if provider == "kling" else {"api_key": Secret(SECRET)}
    c = make_client(provider, base_url="http://127.0.0.1:9", credentials=creds, timeout_s=1.0, model="owner/model")
    try:
        assert isinstance(c, TeacherClient) and SECRET not in repr(c)
        assert supports_find_job(c) is (provider in ("openai", "kling", "luma", "replicate"))
    finally:
        asyncio.run(_close(c))


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown teacher provider"):
        make_client("sora2", credentials={}, timeout_s=1.0)
    with pytest.raises(ValueError, match="api_key"):
        make_client("runway", credentials={}, timeout_s=1.0)
    with pytest.raises(ValueError, match="base_url"):
        make_client("openai", credentials={}, timeout_s=1.0)
    with pytest.raises(ValueError, match="timeout_s"):
        make_client("runway", credentials={"api_key": "k"}, timeout_s=0)


def test_request_key_is_stable_and_distinct():
    a = JobRequest(prompt="p", seed=1, params={"x": 1, "y": 2})
    assert request_key(a) == request_key(JobRequest(prompt="p", seed=1, params={"y": 2, "x": 1}))
    assert request_key(a) != request_key(JobRequest(prompt="p", seed=2, params={"x": 1, "y": 2}))
