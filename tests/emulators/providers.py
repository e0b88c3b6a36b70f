"""The provider table the adapter contract tests run over, and the fixtures they share (test code).

One `Provider` row per `make_client` name says how to start its emulator, build
an adapter pointed at it, and what that provider does where the job contract
lets providers differ (lookup after an ambiguous submit, a concurrency cap that
rejects or queues, a cancel that cancels or only logs, provider-specific error
bodies, what a successful submit sends). `tests/integration/test_adapter_contract.py`
runs every harness check against every row; the per-provider test modules keep
only what no other provider has, and take the same fixtures:

    from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401
    provider = provider_fixture("kling")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional

import pytest

from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import ErrorClass, JobStatus, TeacherClient

from . import fal, kling, luma, openai, replicate, runway, seedance
from .base import Emulator
from .harness import REQUEST

Fault = tuple[int, Any, dict[str, str]]

OPENAI_KEY = "sk-local-test-SECRET-4f9a2b"
KLING_AK, KLING_SK = "ak-TEST-ACCESS-7c1d", "sk-TEST-SECRET-9e8f7a6b-0123456789abcdef"
LUMA_KEY = "luma-TEST-key-8d2c4b6a0e1f"
FAL_KEY = "fal-TEST-1a2b3c4d:5e6f7a8b9c0d"
REPLICATE_KEY = "r8_TEST0123456789abcdefABCDEF"
RUNWAY_KEY = "key_TEST_runway_3c9d1e0f2a4b"
ARK_KEY = "ark-TEST-KEY-5b7e0c2d-91aa"


@dataclass(frozen=True)
class Provider:
    """How to test one `make_client` provider name against its emulator.

    Attributes:
        client: the `make_client` name (Seedance has two: `volcengine`, `byteplus`).
        emulator: starts a fresh emulator (a context manager).
        model: the model the adapter is built with.
        credentials: valid credentials; each value is also a secret no error may show.
        bad_credentials: overrides the emulator rejects with 401 (the auth check).
        errors: submit faults by the class the adapter must map them to.
        extra_errors: further provider-specific submit faults, by test id.
        lookup: whether the adapter can find the job of an ambiguous submit (`find_job`).
        concurrency: over the cap the create is `reject`ed (CONCURRENCY_FULL) or `queue`d.
        cancel: `cancels` (the job ends CANCELLED) or `no_op` (no cancel endpoint; the job runs on).
        cancel_message: text the cancelled job's status must carry, if any.
        on_success: provider-specific checks after a successful job (the wire body, headers, usage).
        client_kw: further adapter keyword arguments.
    """

    client: str
    emulator: Callable[[], Emulator]
    model: str
    credentials: dict[str, str]
    bad_credentials: dict[str, str]
    errors: dict[ErrorClass, Fault]
    on_success: Callable[[JobStatus, Emulator], None]
    extra_errors: dict[str, tuple[ErrorClass, Fault]] = field(default_factory=dict)
    lookup: bool = True
    concurrency: Literal["reject", "queue"] = "reject"
    cancel: Literal["cancels", "no_op"] = "cancels"
    cancel_message: Optional[str] = None
    client_kw: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        return list(self.credentials.values())

    def make(self, emu: Emulator, **overrides: Any) -> TeacherClient:
        """An adapter on `emu`; overrides named like a credential replace it, the rest go to `make_client`."""
        creds = {k: overrides.pop(k) for k in list(overrides) if k in self.credentials}
        args: dict[str, Any] = dict(base_url=emu.base_url, credentials={**self.credentials, **creds}, timeout_s=5.0,
                                    model=self.model, retry_wait_s=0.01, **self.client_kw)
        return make_client(self.client, **{**args, **overrides})


def _only_job_body(emu: Emulator) -> dict[str, Any]:
    assert len(emu.jobs) == 1, list(emu.jobs)
    return next(iter(emu.jobs.values())).body


def _openai_success(status: JobStatus, emu: Emulator) -> None:
    assert status.progress == 1.0
    assert emu.requests[0][2]["idempotency-key"].startswith("afd-")


def _kling_success(status: JobStatus, emu: Emulator) -> None:
    assert status.usage == {"duration_s": 5.1}
    body = _only_job_body(emu)
    assert body["model_name"] == "kling-v1-6" and body["duration"] == "5" and body["external_task_id"].startswith("afd-")
    assert emu.claims and emu.claims[0]["iss"] == KLING_AK  # type: ignore[attr-defined]


def _luma_success(status: JobStatus, emu: Emulator) -> None:
    assert _only_job_body(emu) == {"prompt": REQUEST.prompt, "model": "ray-2"}


def _fal_success(status: JobStatus, emu: Emulator) -> None:
    assert emu.requests[0][2]["authorization"] == f"Key {FAL_KEY}"
    assert _only_job_body(emu) == {"prompt": REQUEST.prompt, "seed": 7}


def _replicate_success(status: JobStatus, emu: Emulator) -> None:
    assert status.usage == {"predict_time": 41.5, "total_time": 43.0}
    job = next(iter(emu.jobs.values()))
    assert job.model == replicate.MODEL and job.body["cancel_after"] == "10m"
    assert job.body["input"] == {"prompt": REQUEST.prompt, "seed": 7}


def _runway_success(status: JobStatus, emu: Emulator) -> None:
    assert status.usage == {"credits": runway.CREDITS_PER_SECOND * 5}
    assert all(r[2]["x-runway-version"] == runway.VERSION for r in emu.requests if not r[1].startswith("/files/"))
    assert _only_job_body(emu) == {"model": "gen4.5", "promptText": REQUEST.prompt, "ratio": "1280:720", "duration": 5, "seed": 7}


def _seedance_success(status: JobStatus, emu: Emulator) -> None:
    assert status.usage["total_tokens"] == 108900
    assert _only_job_body(emu)["content"][0]["text"] == f"{REQUEST.prompt} --seed 7"


def _seedance(client: str) -> Provider:
    return Provider(client=client, emulator=lambda: seedance.SeedanceEmulator(api_key=ARK_KEY), model="seedance-1-0-pro-250528",
                    credentials={"api_key": ARK_KEY}, bad_credentials={"api_key": "ark-WRONG-key-000000"},
                    errors=seedance.ERRORS, extra_errors={"safe_mode_cap": (ErrorClass.QUOTA_EXHAUSTED, seedance.SAFE_MODE_CAP)},
                    lookup=False, on_success=_seedance_success)


PROVIDERS: dict[str, Provider] = {p.client: p for p in [
    Provider(client="openai", emulator=lambda: openai.OpenAIVideosEmulator(api_key=OPENAI_KEY), model="local-physics",
             credentials={"api_key": OPENAI_KEY}, bad_credentials={"api_key": "sk-wrong-key-XYZ123"},
             errors=openai.ERRORS, on_success=_openai_success),
    Provider(client="kling", emulator=lambda: kling.KlingEmulator(access_key=KLING_AK, secret_key=KLING_SK), model="kling-v1-6",
             credentials={"access_key": KLING_AK, "secret_key": KLING_SK},
             bad_credentials={"secret_key": "sk-WRONG-SECRET-123456-0123456789abcdef"},
             errors=kling.ERRORS, cancel="no_op", on_success=_kling_success),
    Provider(client="luma", emulator=lambda: luma.LumaEmulator(api_key=LUMA_KEY), model="ray-2",
             credentials={"api_key": LUMA_KEY}, bad_credentials={"api_key": "luma-WRONG-key-0000"},
             errors=luma.ERRORS, cancel_message="deleted", on_success=_luma_success),
    Provider(client="fal", emulator=lambda: fal.FalEmulator(api_key=FAL_KEY), model=fal.APP,
             credentials={"api_key": FAL_KEY}, bad_credentials={"api_key": "fal-WRONG:000000000"},
             errors=fal.ERRORS, lookup=False, on_success=_fal_success),
    Provider(client="replicate", emulator=lambda: replicate.ReplicateEmulator(api_key=REPLICATE_KEY), model=replicate.MODEL,
             credentials={"api_key": REPLICATE_KEY}, bad_credentials={"api_key": "r8_WRONG000000000000"},
             errors=replicate.ERRORS, client_kw={"cancel_after": "10m"}, on_success=_replicate_success),
    Provider(client="runway", emulator=lambda: runway.RunwayEmulator(api_key=RUNWAY_KEY), model="gen4.5",
             credentials={"api_key": RUNWAY_KEY}, bad_credentials={"api_key": "key_WRONG_0000000000"},
             errors=runway.ERRORS, extra_errors={"daily_limit": (ErrorClass.QUOTA_EXHAUSTED, runway.DAILY_LIMIT)},
             lookup=False, concurrency="queue", on_success=_runway_success),
    _seedance("volcengine"),
    _seedance("byteplus"),
]}


def submit_faults() -> list[Any]:
    """`(client, fault id)` for every provider's submit faults, as `pytest.param`s with readable ids."""
    out = []
    for name, p in PROVIDERS.items():
        ids = [cls.value for cls in p.errors] + list(p.extra_errors)
        out += [pytest.param(name, fid, id=f"{name}-{fid}") for fid in ids]
    return out


def submit_fault(p: Provider, fault_id: str) -> tuple[ErrorClass, Fault]:
    """The class a fault must map to, and the fault, for an id from `submit_faults`."""
    if fault_id in p.extra_errors:
        return p.extra_errors[fault_id]
    cls = ErrorClass(fault_id)
    return cls, p.errors[cls]


# -- fixtures (import them into a test module; pick the rows with `provider_fixture`) -----------
def provider_fixture(*names: str) -> Any:
    """A module-scoped `provider` fixture over these rows (one emulator per row and module)."""
    @pytest.fixture(scope="module", params=list(names))
    def provider(request: pytest.FixtureRequest) -> Provider:
        return PROVIDERS[request.param]

    return provider


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emu(provider: Provider) -> Iterator[Emulator]:
    with provider.emulator() as e:
        yield e


@pytest.fixture()
def make(provider: Provider, emu: Emulator) -> Callable[..., TeacherClient]:
    """`make(**overrides)`: an adapter on a freshly reset emulator (see `Provider.make`)."""
    emu.reset()
    return lambda **overrides: provider.make(emu, **overrides)
