"""What a teacher job can end in, besides a clip (raised by `gateway.TeacherGateway.run_job`).

Each exception names one outcome class the caller acts on differently:
deferred (hand the prompt back, nothing lost), dead-lettered (the prompt is
poison; its reason is on the dead-letter stream), failed (every attempt
failed), halted (an account-level failure: stop taking prompts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afd_async.teacher.contract import JobHandle

__all__ = ["GatewayHalted", "JobDeadLettered", "JobDeferred", "JobFailed"]


class JobDeferred(RuntimeError):
    """Not done now, nothing lost: another actor owns it, the quota timed out, or a create is ambiguous."""


class JobDeadLettered(RuntimeError):
    """A poison prompt: recorded on the dead-letter stream with its reason."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(f"dead-lettered [{error_class}]: {reason}")
        self.error_class = error_class


class JobFailed(RuntimeError):
    """Every attempt ended in a terminal provider failure or an expired result."""


class GatewayHalted(RuntimeError):
    """An account-level failure (AUTH, QUOTA_EXHAUSTED): stop submitting, alert."""


class _AttemptFailed(Exception):
    """This attempt is over (journal "failed"); the next attempt is a fresh job."""


class _Resolved(Exception):
    """A failed create turned out to exist at the provider (found by lookup)."""

    def __init__(self, handle: "JobHandle") -> None:
        super().__init__(handle.job_id)
        self.handle = handle
