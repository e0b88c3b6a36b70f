"""Webhook signatures: verify a provider's completion callback before it may end a job.

Why: a callback frees a paid quota slot and, when signed, carries the job's
result URL; an unverified POST must do neither. Two schemes exist among our
providers, one verifier each; both refuse with `WebhookRejected`, whose message
says what was wrong and never contains the secret or the signature.

- **Standard Webhooks** (standardwebhooks.com; Replicate, OpenAI, and the local
  teacher server): headers `webhook-id`, `webhook-timestamp` (Unix seconds),
  `webhook-signature: v1,<base64 HMAC-SHA256>` (space-separated, any one may
  match) over `"{id}.{timestamp}.{body}"`, keyed with the base64 part of the
  `whsec_...` secret.
- **fal**: headers `x-fal-webhook-request-id`, `-user-id`, `-timestamp`,
  `-signature` (hex); ED25519 over `"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body) hex}"`
  with any key of fal's JWKS. fal publishes the JWKS at
  `https://rest.alpha.fal.ai/.well-known/jwks.json`; this code never fetches it
  (actors may run offline): `teacher.callback.fal_jwks_path` names a saved copy.

Both reject a timestamp further than `tolerance_s` from now (stale or from the
future) and remember message ids for twice that window: a second delivery of
one id raises `WebhookReplayed`, which the receiver acknowledges without acting
on it (a provider's retry of a delivery whose answer was lost looks the same).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping, Optional

from afd_async.config.credentials import Secret

__all__ = ["FalVerifier", "StandardWebhookVerifier", "WebhookRejected", "WebhookReplayed", "load_jwks",
           "sign_standard_webhook"]

_MAX_REMEMBERED = 100_000  # message ids kept for replay detection (bounded memory)


class WebhookRejected(ValueError):
    """A callback that must not be acted on; the message says why (no secret, no signature)."""


class WebhookReplayed(WebhookRejected):
    """A message id delivered before: acknowledge it, do nothing again."""


def _secret_key(secret: "str | Secret") -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (a secret without the prefix is base64 too)."""
    raw = secret.reveal() if isinstance(secret, Secret) else secret
    body = raw[len("whsec_"):] if raw.startswith("whsec_") else raw
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise ValueError("webhook secret is shorter than 16 bytes")
    return key


def sign_standard_webhook(secret: "str | Secret", msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message (what a sender, e.g. the local server, sends)."""
    mac = hmac.new(_secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class _SeenIds:
    """Message ids seen within the replay window; oldest forgotten first."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s, self.clock = window_s, clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_add(self, msg_id: str) -> None:
        now = self.clock()
        while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) > _MAX_REMEMBERED):
            self._seen.popitem(last=False)
        if msg_id in self._seen:
            raise WebhookReplayed(f"webhook message {msg_id[:64]!r} was already delivered")
        self._seen[msg_id] = now + self.window_s


def _timestamp(value: Optional[str], tolerance_s: float, now: float) -> int:
    try:
        ts = int(value or "")
    except ValueError:
        raise WebhookRejected("webhook timestamp header missing or not an integer") from None
    if abs(now - ts) > tolerance_s:
        raise WebhookRejected(f"webhook timestamp is {now - ts:+.0f}s from now, beyond the {tolerance_s:g}s "
                              "tolerance (stale or replayed)")
    return ts


class StandardWebhookVerifier:
    """Verifies Standard-Webhooks signed callbacks (Replicate, OpenAI, the local teacher server).

    Args:
        secret: the endpoint's `whsec_...` secret (e.g. Replicate's `GET /v1/webhooks/default/secret`).
        tolerance_s: largest accepted distance between the timestamp and now.
        clock: epoch seconds (tests pass a fixed one).
    """

    signed = True

    def __init__(self, secret: "str | Secret", *, tolerance_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = _secret_key(secret)
        self.tolerance_s, self.clock = tolerance_s, clock
        self._seen = _SeenIds(2 * tolerance_s, clock)

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery; returns its message id.

        Raises:
            WebhookRejected: missing headers, a stale timestamp or no matching signature.
            WebhookReplayed: this message id was verified before.
        """
        msg_id, sigs = headers.get("webhook-id"), headers.get("webhook-signature")
        if not msg_id or not sigs:
            raise WebhookRejected("webhook-id or webhook-signature header missing")
        ts = _timestamp(headers.get("webhook-timestamp"), self.tolerance_s, self.clock())
        mac = hmac.new(self._key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        want = base64.b64encode(mac)
        if not any(v == "v1" and hmac.compare_digest(s.encode(), want)
                   for v, _, s in (part.partition(",") for part in sigs.split())):
            raise WebhookRejected("no webhook signature matches (wrong secret, or the body was altered)")
        self._seen.check_and_add(msg_id)
        return msg_id


def load_jwks(path: "str | Path") -> list[bytes]:
    """ED25519 public keys (raw 32 bytes) of a JWKS file `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x"}]}`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        keys = [base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4)) for k in doc["keys"]
                if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"fal JWKS {path}: unreadable ({type(e).__name__})") from None
    if not keys or any(len(k) != 32 for k in keys):
        raise ValueError(f"fal JWKS {path}: no 32-byte Ed25519 key")
    return keys


class FalVerifier:
    """Verifies fal's ED25519-signed webhooks against saved JWKS keys (see the module docstring).

    Args:
        public_keys: raw 32-byte Ed25519 keys (`load_jwks`).
        tolerance_s / clock: as `StandardWebhookVerifier`.
    """

    signed = True

    def __init__(self, public_keys: list[bytes], *, tolerance_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if not public_keys:
            raise ValueError("FalVerifier needs at least one public key")
        self._keys = [Ed25519PublicKey.from_public_bytes(k) for k in public_keys]
        self.tolerance_s, self.clock = tolerance_s, clock
        self._seen = _SeenIds(2 * tolerance_s, clock)

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery; returns its request id (raises like `StandardWebhookVerifier.verify`)."""
        from cryptography.exceptions import InvalidSignature

        req, user = headers.get("x-fal-webhook-request-id"), headers.get("x-fal-webhook-user-id")
        ts_raw, sig_hex = headers.get("x-fal-webhook-timestamp"), headers.get("x-fal-webhook-signature")
        if not req or not user or not sig_hex:
            raise WebhookRejected("x-fal-webhook-request-id, -user-id or -signature header missing")
        ts = _timestamp(ts_raw, self.tolerance_s, self.clock())
        message = "\n".join([req, user, str(ts), hashlib.sha256(body).hexdigest()]).encode()
        try:
            sig = bytes.fromhex(sig_hex)
        except ValueError:
            raise WebhookRejected("x-fal-webhook-signature is not hex") from None
        for key in self._keys:
            try:
                key.verify(sig, message)
                break
            except InvalidSignature:
                continue
        else:
            raise WebhookRejected("no fal JWKS key verifies the webhook signature")
        self._seen.check_and_add(f"{req}:{ts}:{sig_hex[:32]}")
        return req
