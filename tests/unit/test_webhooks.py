"""Webhook signatures (`teacher.webhooks`): valid ones pass; forged, stale, replayed ones are refused clearly."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from afd_async.config.credentials import Secret
from afd_async.teacher.webhooks import (FalVerifier, StandardWebhookVerifier, WebhookRejected, WebhookReplayed,
                                        load_jwks, sign_standard_webhook)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOW = 1_800_000_000
BODY = json.dumps({"id": "p1", "status": "succeeded"}).encode()


def headers(msg_id: str = "msg_1", ts: int = NOW, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhook(secret, msg_id, ts, body)}


def verifier() -> StandardWebhookVerifier:
    return StandardWebhookVerifier(Secret(SECRET), tolerance_s=300, clock=lambda: NOW)


def test_standard_webhook_valid_signature_is_accepted():
    assert verifier().verify(headers(), BODY) == "msg_1"
    # several signatures (a secret rotation): any one that matches is enough
    h = headers()
    h["webhook-signature"] = "v1,AAAA " + h["webhook-signature"]
    assert verifier().verify(h, BODY) == "msg_1"


def test_standard_webhook_matches_the_reference_construction():
    """HMAC-SHA256 over "id.timestamp.body", keyed with the base64 part of the whsec_ secret (standardwebhooks.com)."""
    import hmac

    key = base64.b64decode(SECRET.split("_", 1)[1])
    want = base64.b64encode(hmac.new(key, b"msg_1.%d." % NOW + BODY, hashlib.sha256).digest()).decode()
    assert sign_standard_webhook(SECRET, "msg_1", NOW, BODY) == "v1," + want


@pytest.mark.parametrize("case, match", [
    ("wrong_secret", "no webhook signature matches"),
    ("altered_body", "no webhook signature matches"),
    ("stale", "beyond the 300s tolerance"),
    ("future", "beyond the 300s tolerance"),
    ("no_signature", "header missing"),
    ("bad_timestamp", "not an integer"),
])
def test_standard_webhook_forged_or_stale_is_rejected_with_the_reason(case, match):
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    h, body = headers(), BODY
    if case == "wrong_secret":
        h = headers(secret=other)
    elif case == "altered_body":
        body = BODY.replace(b"succeeded", b"failed")
    elif case == "stale":
        h = headers(ts=NOW - 301)
    elif case == "future":
        h = headers(ts=NOW + 301)
    elif case == "no_signature":
        del h["webhook-signature"]
    elif case == "bad_timestamp":
        h["webhook-timestamp"] = "yesterday"
    with pytest.raises(WebhookRejected, match=match) as info:
        verifier().verify(h, body)
    assert SECRET.split("_", 1)[1] not in str(info.value)
    if "webhook-signature" in h:
        assert h["webhook-signature"][3:] not in str(info.value)


def test_standard_webhook_replayed_message_id_is_refused():
    v = verifier()
    v.verify(headers(), BODY)
    with pytest.raises(WebhookReplayed, match="already delivered"):
        v.verify(headers(), BODY)
    assert v.verify(headers("msg_2"), BODY) == "msg_2"  # another message is fine


def test_malformed_secret_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="whsec_") as info:
        StandardWebhookVerifier("whsec_not*base64*at*all")
    assert "not*base64" not in str(info.value)


def fal_headers(key: Ed25519PrivateKey, body: bytes, ts: int = NOW, req: str = "req-1") -> dict[str, str]:
    msg = "\n".join([req, "user-1", str(ts), hashlib.sha256(body).hexdigest()]).encode()
    return {"x-fal-webhook-request-id": req, "x-fal-webhook-user-id": "user-1",
            "x-fal-webhook-timestamp": str(ts), "x-fal-webhook-signature": key.sign(msg).hex()}


def test_fal_ed25519_signature_against_a_saved_jwks(tmp_path):
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwks = tmp_path / "fal-jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519",
                                          "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}))
    v = FalVerifier(load_jwks(jwks), tolerance_s=300, clock=lambda: NOW)
    body = json.dumps({"request_id": "req-1", "status": "OK"}).encode()
    assert v.verify(fal_headers(key, body), body) == "req-1"
    with pytest.raises(WebhookReplayed):
        v.verify(fal_headers(key, body), body)
    with pytest.raises(WebhookRejected, match="no fal JWKS key verifies"):
        v.verify(fal_headers(other, body, req="req-2"), body)
    with pytest.raises(WebhookRejected, match="no fal JWKS key verifies"):
        v.verify(fal_headers(key, body, req="req-3"), body + b" ")
    with pytest.raises(WebhookRejected, match="tolerance"):
        v.verify(fal_headers(key, body, ts=NOW - 1000, req="req-4"), body)
