"""Group claims with staleness admission and leases, in Redis (one Lua script each).

Invariant (admission, DESIGN.md §4 and the AReaL lesson): a training group with
step g is handed out only while g ≤ learner_version + k, so at most k + 1 groups
are ever rolled out ahead of the learner. L is the Redis key `RunKeys.student_version`,
learner_version's one channel: the script reads it atomically with the group counter, which
it could not do with a version announced over ZeroMQ. Claims are leases: a group whose
actor died (no `done` before the lease ends) goes to the re-roll list, and the
next claim takes re-rolls first. Teacher clips are never re-requested for a
re-roll: they are keyed by (prompt, seed) in the teacher cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import redis

from afd_async.store.keys import RunKeys

_CLAIM = """
-- KEYS: next, reroll, running, student_version   ARGV: total, warmup, k, now_ms, lease_ms
local now = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, n in ipairs(expired) do
  redis.call('ZREM', KEYS[3], n)
  redis.call('RPUSH', KEYS[2], n)
end
local n = redis.call('LPOP', KEYS[2])
local reroll = 1
if not n then
  reroll = 0
  n = tonumber(redis.call('GET', KEYS[1]) or '0')
  if n >= tonumber(ARGV[1]) then return {-1, 0} end
  local L = tonumber(redis.call('GET', KEYS[4]) or '0')
  local warm = tonumber(ARGV[2])
  if n >= warm and (n - warm) > L + tonumber(ARGV[3]) then return {-2, 0} end
  redis.call('INCR', KEYS[1])
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), n)
return {tonumber(n), reroll}
"""

# KEYS running, reroll; ARGV group. A group already waiting for its re-roll is not queued twice.
_REROLL = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('LPOS', KEYS[2], ARGV[1]) == false then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
"""

EXHAUSTED = -1  # every group of the plan was handed out
NOT_ADMITTED = -2  # the learner is too far behind: wait for a new version


@dataclass(frozen=True)
class Claim:
    group: int
    reroll: bool


class GroupClaims:
    """Hands out group indices to student actors under the staleness admission rule."""

    def __init__(self, client: redis.Redis, keys: RunKeys, *, total_groups: int, warmup_groups: int,
                 staleness: int, lease_s: float) -> None:
        self._r, self.keys = client, keys
        self.total, self.warmup, self.k, self.lease_ms = total_groups, warmup_groups, staleness, int(lease_s * 1000)
        self._claim = client.register_script(_CLAIM)
        self._reroll = client.register_script(_REROLL)

    @property
    def running_key(self) -> str:
        return self.keys.next_group + ":running"

    def _now_ms(self) -> int:
        sec, usec = self._r.time()
        return int(sec) * 1000 + int(usec) // 1000

    def try_claim(self) -> tuple[Optional[Claim], int]:
        """(claim, code): a claim, or None with EXHAUSTED / NOT_ADMITTED."""
        n, reroll = self._claim(
            keys=[self.keys.next_group, self.keys.reroll, self.running_key, self.keys.student_version],
            args=[self.total, self.warmup, self.k, self._now_ms(), self.lease_ms],
        )
        if n < 0:
            return None, int(n)
        return Claim(int(n), bool(reroll)), 0

    def renew(self, group: int) -> None:
        self._r.zadd(self.running_key, {str(group): self._now_ms() + self.lease_ms}, xx=True)

    def done(self, group: int) -> None:
        """The group's pairs are in the stream: end its lease."""
        self._r.zrem(self.running_key, str(group))

    def reroll(self, group: int) -> None:
        """Ask for the group's student side again (stale or lost); its teacher clips stay cached.

        Idempotent while the request waits (both feeds may drop the same group); a re-roll that comes after
        the group was trained is skipped by the learners' ledgers.
        """
        self._reroll(keys=[self.running_key, self.keys.reroll], args=[str(group)])
