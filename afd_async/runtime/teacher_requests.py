"""Teacher requests of planned groups: what the teacher actors render ahead of the student actors."""

from __future__ import annotations

import msgpack
import redis

from afd_async.store.keys import RunKeys
from afd_async.train.plan import Planner


class TeacherRequests:
    """Queues the teacher requests of planned groups, once per group (idempotent across actors)."""

    def __init__(self, client: redis.Redis, keys: RunKeys, planner: Planner, queue_key: str) -> None:
        self._r, self.keys, self.planner, self.queue_key = client, keys, planner, queue_key

    def ensure(self, first: int, count: int) -> int:
        """Queue requests for groups `first … first+count−1` not queued before; returns groups queued now."""
        queued = 0
        for n in range(first, min(first + count, self.planner.total_groups)):
            if not self._r.sadd(self.keys.requested, n):
                continue
            group = self.planner.group(n)
            rows = {(p.prompt, p.teacher_seed): p for p in group.pairs}
            records = [msgpack.packb({"schema": 1, "prompt_id": p.prompt_id, "prompt": p.prompt, "seed": p.teacher_seed})
                       for p in rows.values()]
            if records:
                self._r.rpush(self.queue_key, *records)
            queued += 1
        return queued
