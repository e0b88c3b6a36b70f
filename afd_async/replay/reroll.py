"""Re-roll requests: the student side of a dropped pair, against the same teacher clip.

A teacher clip is paid for; when a pair is dropped as stale, only the cheap
student rollout is repeated. `StalenessFilter(on_drop=queue.push)` sends the
prompt and its `teacher_ref` here; student actors `pop` requests before taking
fresh prompts. A Redis list (LPUSH / BRPOP with a timeout): each request goes to
one actor; a request popped by an actor that then dies is lost with that actor's
rollout and the teacher clip stays in the teacher cache for the prompt's next turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import redis

from afd_async.codec.msg import pack, unpack
from afd_async.replay.pair import Pair

REROLL_KIND = "reroll"
REROLL_SCHEMA = 1


@dataclass(frozen=True)
class RerollRequest:
    """What a student actor needs to roll out a prompt again."""

    prompt_id: str
    prompt: str
    teacher_ref: str
    teacher_requested_at: float
    teacher_meta: dict[str, Any]
    reason: str


class RerollQueue:
    """A FIFO of `RerollRequest`s in one Redis list. The client is not owned."""

    def __init__(self, client: redis.Redis, *, key: str = "afd:reroll") -> None:
        self._r = client
        self.key = key
        self.pushed = 0

    def push(self, pair: Pair, reason: str = "stale") -> None:
        msg = {"kind": REROLL_KIND, "schema": REROLL_SCHEMA, "prompt_id": pair.prompt_id, "prompt": pair.prompt,
               "teacher_ref": pair.teacher_ref, "teacher_requested_at": pair.teacher_requested_at,
               "teacher_meta": dict(pair.teacher_meta), "reason": reason}
        self._r.lpush(self.key, pack(msg))
        self.pushed += 1

    def pop(self, timeout_s: Optional[float] = None) -> Optional[RerollRequest]:
        """The oldest request; waits up to `timeout_s` (None: do not wait). None when empty."""
        if timeout_s is None:
            data = self._r.rpop(self.key)
        else:
            if timeout_s <= 0:
                raise ValueError("timeout_s must be > 0 (0 would block forever)")
            item = self._r.brpop([self.key], timeout=timeout_s)
            data = item[1] if item else None
        if data is None:
            return None
        m = unpack(data, expect_kind=REROLL_KIND, schemas=(REROLL_SCHEMA,))
        return RerollRequest(m["prompt_id"], m["prompt"], m["teacher_ref"], float(m["teacher_requested_at"]), dict(m["teacher_meta"]), m["reason"])

    def __len__(self) -> int:
        return int(self._r.llen(self.key))
