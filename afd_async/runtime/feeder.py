"""Feeder: pair stream (Redis consumer groups) → complete groups → batches → learners (ZeroMQ feeds).

One `GroupFeed` per learner (its own consumer group, so each learner sees every
pair once). A feed collects a group's rows as they arrive, checks staleness
against the student learner's version when the group is complete (drops are
counted and the group's student side is re-rolled by either feed; the teacher clips stay),
loads the teacher clips, and collates. A batch's Redis ids travel as its feed
token and are acked only when the learner acks the batch: a learner that dies
mid-step loses nothing, its batches are redelivered.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Optional

import redis
import torch

from afd_async.replay.pair import Pair
from afd_async.replay.reader import PairReader
from afd_async.replay.staleness import StalenessFilter
from afd_async.runtime.groups import GroupClaims
from afd_async.store.keys import RunKeys
from afd_async.transport import Batch

log = logging.getLogger(__name__)

TeacherLoader = Callable[[str], torch.Tensor]  # teacher_ref -> uint8 (F, H, W, 3)


class GroupFeed:
    """Turns one consumer group's pairs into collated group batches (the `next_batch` of a FeedServer).

    Args:
        learner: "discriminator" or "student" (the consumer group; the student feed skips warm-up groups).
        staleness: k; a group is dropped (and re-rolled) when any row has learner_version − policy_version > k.
    """

    def __init__(
        self, client: redis.Redis, keys: RunKeys, *, learner: str, claims: GroupClaims, teacher: TeacherLoader,
        staleness: int, warmup_groups: int, dedupe_window_s: int = 3600, read_block_ms: int = 50,
        on_drop: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self._r, self.keys, self.learner, self.claims = client, keys, learner, claims
        self.teacher, self.warmup_groups, self.block_ms = teacher, warmup_groups, read_block_ms
        self.reader = PairReader(client, stream=keys.pairs, group=learner, consumer="feeder", dedupe_window_s=dedupe_window_s)
        self.filter = StalenessFilter(staleness)
        self.on_drop = on_drop
        self._rows: dict[int, dict[int, tuple[str, Pair]]] = collections.defaultdict(dict)
        self._ready: collections.deque[Batch] = collections.deque()  # collated, or redelivered after a lost learner
        self._lock = threading.Lock()
        self._recovered = False
        self._pending_after = "0"  # paging through our pending entries after a restart
        self._recovered_groups: set[int] = set()  # groups with rows delivered before the restart
        self._order = 0  # collation order, so batches handed back by a lost learner keep their order
        self.groups_sent = 0
        self.groups_dropped = 0

    # -- FeedServer hooks ---------------------------------------------------------------------
    def next_batch(self, rank: int) -> Optional[Batch]:
        with self._lock:
            if not self._ready:
                self._pull()
            if self._ready:
                self.groups_sent += 1
                return self._ready.popleft()
        return None

    def on_ack(self, rank: int, token: Any) -> None:
        self.reader.ack(list(token["ids"]))

    def on_lost(self, rank: int, tokens: list[Any]) -> None:
        """A learner left without acking: redeliver those groups, first and in their first order, to the next
        learner rank that asks (same Redis ids: they are acked once, after a learner checkpoint holds them)."""
        with self._lock:
            for token in sorted(tokens, key=lambda t: t["order"], reverse=True):
                b = token["batch"]
                self._ready.appendleft(Batch(b.tensors, b.meta, token))

    # -- internals ----------------------------------------------------------------------------
    def _pull(self) -> None:
        recovering = not self._recovered
        if recovering:  # after a feeder restart: our own unacked entries first, page by page
            before = self.reader.counters["read"]
            entries = self.reader.read(256, pending=True, after=self._pending_after)
            if entries:
                self._pending_after = entries[-1][0]
            self._recovered = self.reader.counters["read"] - before < 256  # a short page: that was the last
        else:
            entries = self.reader.read(64, block_ms=self.block_ms)
        for sid, pair in entries:
            if pair.group is None:
                log.warning("pair %s has no group; acked and skipped", pair.pair_id)
                self.reader.ack([sid])
                continue
            if self.learner == "student" and pair.group < self.warmup_groups:
                self.reader.ack([sid])  # warm-up groups train D only
                continue
            replaced = self._rows[pair.group].get(pair.group_row)
            if replaced is not None and replaced[0] != sid:  # a re-roll's row replaces a dead actor's: ack the old
                self.reader.ack([replaced[0]])  # one, or it stays pending forever and pins the stream
            self._rows[pair.group][pair.group_row] = (sid, pair)
            if recovering:
                self._recovered_groups.add(pair.group)
            if len(self._rows[pair.group]) == pair.group_size:
                self._complete(pair.group)

    def _learner_version(self) -> int:
        return int(self._r.get(self.keys.student_version) or 0)

    def _complete(self, group: int) -> None:
        rows = [self._rows[group][i] for i in range(len(self._rows[group]))]
        del self._rows[group]
        ids = [sid for sid, _ in rows]
        pairs = [p for _, p in rows]
        recovered = group in self._recovered_groups
        self._recovered_groups.discard(group)
        # A group delivered before a feeder restart passed this check then, and a learner may have trained it
        # (its ack waits for a checkpoint): dropping it now would ack entries a learner may still need.
        if group >= self.warmup_groups and not recovered:
            version = self._learner_version()
            if not all([self.filter.check(p, version) for p in pairs]):
                self.reader.ack(ids)
                self.groups_dropped += 1
                # Either feed asks for the re-roll: the two feeds read the learner version at different moments,
                # so one may drop a group the other fed; without a re-roll that learner would never get it.
                self.claims.reroll(group)
                if self.on_drop:
                    self.on_drop(group, len(pairs))
                return
        t0 = time.monotonic()
        batch = self._collate(group, pairs)
        batch.meta["collate_s"] = time.monotonic() - t0
        batch.meta["stream_ids"] = ids  # for the learner's ledger (audit: which Redis entries a step trained)
        self._order += 1
        self._ready.append(Batch(batch.tensors, batch.meta, {"ids": ids, "batch": batch, "order": self._order}))

    def _collate(self, group: int, pairs: list[Pair]) -> Batch:
        teacher = torch.stack([self.teacher(p.teacher_ref) for p in pairs])
        tensors = {
            "teacher": teacher,
            "student": torch.stack([p.student_latent for p in pairs]),
            "student_rgb": torch.stack([p.student_rgb for p in pairs]),
        }
        meta = {
            "group": group,
            "phase": "warmup" if group < self.warmup_groups else "train",
            "prompt_ids": [p.prompt_id for p in pairs],
            "prompts": [p.prompt for p in pairs],
            "pair_ids": [p.pair_id for p in pairs],
            "policy_versions": [p.policy_version for p in pairs],
            "created_at": [p.created_at for p in pairs],
        }
        return Batch(tensors, meta, None)
