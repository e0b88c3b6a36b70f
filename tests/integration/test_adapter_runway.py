"""Runway specifics against its emulator (the image-to-video route); the contract checks,
version header, THROTTLED and daily limit included, are in test_adapter_contract.py."""

from __future__ import annotations

import pytest
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.contract import JobRequest

pytestmark = pytest.mark.anyio
provider = provider_fixture("runway")


async def test_image_to_video_route(make, emu):
    async with make() as client:
        await client.submit(JobRequest(prompt="pan left", params={"promptImage": "https://example.com/a.png"}))
    assert emu.requests[-1][1] == "/v1/image_to_video"
