"""The learners' shared driver over a feed: batches in, each group trained once, acks only after checkpoints.

Acks wait for the checkpoint that includes the step (`learner_state.py` states the invariant), so
a learner killed at any instant resumes without losing or repeating a group. In ordered mode
(staleness 0) groups are trained in plan order, so the async learners compute what `afd sync` does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

import torch

from afd_async.models.tiny_discriminator import frames_to_video
from afd_async.runtime.busy import BusyMeter
from afd_async.runtime.learner_state import Checkpointer
from afd_async.train.batch import PairBatch
from afd_async.seams import BatchSource
from afd_async.transport import FeedEnded, ReceivedBatch, TransportTimeout

log = logging.getLogger(__name__)


def to_pair_batch(batch: ReceivedBatch, encode_text: Callable[[list[str]], torch.Tensor], *, pixel_latent: bool,
                  device: torch.device | str = "cpu") -> PairBatch:
    """Feed batch → learner `PairBatch` on `device` (teacher frames to [-1, 1]; the tiny student's latent is its
    video). Decoded on CPU, then moved, so a GPU learner computes on the very values a CPU one does."""
    t = batch.tensors
    meta = batch.meta
    student = torch.as_tensor(t["student"]).float()
    rgb = None if pixel_latent else frames_to_video(torch.as_tensor(t["student_rgb"]))
    return PairBatch(
        prompt_ids=list(meta["prompt_ids"]), prompts=list(meta["prompts"]), text=encode_text(list(meta["prompts"])),
        teacher=frames_to_video(torch.as_tensor(t["teacher"])), student=student, student_rgb=rgb,
        policy_version=torch.tensor(meta["policy_versions"], dtype=torch.long),
    ).to(device)


def pick_group(held: dict[int, Any], expected: Optional[int], *, max_hold: int, idle_s: float,
               hold_timeout_s: float) -> Optional[int]:
    """Which held group to train next, or None to wait for more.

    Arrival order when `expected` is None. Ordered mode trains `expected` once it is here; it gives up
    waiting for it (and trains the smallest held group) when `max_hold` later groups are held, or when
    nothing has arrived for `hold_timeout_s`: at k = 0 admission lets at most one group run ahead, so
    a group that never comes (dead-lettered) would otherwise stall the learner forever.
    """
    if not held:
        return None
    if expected is None:
        return next(iter(held))
    if expected in held:
        return expected
    if len(held) < max_hold and idle_s < hold_timeout_s:
        return None
    return min(held)


class FeedLoop:
    """Both learners' driver: batches in, each group trained once, checkpoints, acks only after checkpoints.

        (the learner's state was restored from its newest checkpoint: learner_state.Checkpointer)
        while not stopped:
            batch = the next group to train (ordered mode: the plan's next group; early arrivals wait)
            group already trained → ack once its checkpoint is durable, no step (a redelivery)
            else process(batch)   → None: interrupted, nothing recorded or acked (the batch goes back on close)
                                  → record it; every `checkpoint_every` groups: checkpoint, then ack
        on stop, done or feed end: a final checkpoint, then its acks

    Args:
        expected: ordered mode (staleness 0): the group index to train next, as the synchronous loop
            would; a redelivered batch racing a newer one then cannot change what is computed.
            None: train in arrival order.
        timing: the learner's split of its last `process` call (`step`, `d_wait`, `publish` seconds).
        max_hold: ordered mode holds at most this many early groups, then trains the smallest;
            so it does after `hold_timeout_s` without a new batch (a group that never comes, e.g. dead-lettered).
    """

    def __init__(self, feed: BatchSource, stop: threading.Event, *, checkpointer: Checkpointer,
                 timing: Callable[[], dict[str, float]] = dict, expected: Optional[Callable[[], int]] = None,
                 batch_timeout_s: float = 1.0, max_hold: int = 16, hold_timeout_s: float = 120.0,
                 warm_batches: int = 1) -> None:
        self.feed, self.stop, self.ckpt, self.timing = feed, stop, checkpointer, timing
        self.expected, self.batch_timeout_s, self.max_hold = expected, batch_timeout_s, max_hold
        self.hold_timeout_s = hold_timeout_s
        self._last_arrival = time.monotonic()
        self.busy = BusyMeter(warm_batches)
        self.wait_s = 0.0  # the last trained batch's wait for the feed
        self.checkpoint_s = 0.0  # the last checkpoint's time on this thread (with a background writer: its snapshot)
        self._waited = 0.0
        self._held: dict[int, list[ReceivedBatch]] = {}

    def _pick(self) -> Optional[tuple[int, list[ReceivedBatch]]]:
        expected = None if self.expected is None else self.expected()
        group = pick_group(self._held, expected, max_hold=self.max_hold,
                           idle_s=time.monotonic() - self._last_arrival, hold_timeout_s=self.hold_timeout_s)
        if group is None:
            return None
        if expected is not None and group != expected:
            log.warning("ordered feed: group %d not here while %d later ones are; training %d",
                        expected, len(self._held), group)
        return group, self._held.pop(group)

    def _receive(self) -> bool:
        """Take one batch from the feed (bounded wait); False when the feed has ended."""
        t0 = time.monotonic()
        try:
            batch = self.feed.next(timeout_s=self.batch_timeout_s)
        except TransportTimeout:
            return True
        except FeedEnded:
            return False
        finally:
            self._waited += time.monotonic() - t0
        self._last_arrival = time.monotonic()
        group = int(batch.meta["group"])
        if self.ckpt.ledger.has(group):
            self.ckpt.duplicate(group, batch)
        else:
            self._held.setdefault(group, []).append(batch)  # a second delivery rides along with the first
        return True

    def run(self, process: Callable[[ReceivedBatch], Optional[bool]]) -> bool:
        """`process(batch)` returns True when the learner is done, None when interrupted; returns done."""
        done = False
        while not self.stop.is_set() and not done:
            picked = self._pick()
            if picked is None:
                if not self._receive():
                    break
                continue
            group, batches = picked
            self.wait_s, self._waited = self._waited, 0.0
            t0 = time.monotonic()
            result = process(batches[0])
            proc_s = time.monotonic() - t0
            if result is None:
                self._held[group] = batches
                break
            t1 = time.monotonic()
            if self.ckpt.trained(group, batches[0].meta, batches):
                self.checkpoint_s = time.monotonic() - t1
            parts = dict(self.timing())
            parts["other"] = proc_s - sum(parts.values())
            self.busy.add(batch_wait=self.wait_s, checkpoint=time.monotonic() - t1, **parts)
            done = bool(result)
        t1 = time.monotonic()
        self.ckpt.checkpoint()  # what was trained is durable and acked; held batches go back on close
        self.checkpoint_s = time.monotonic() - t1
        return done
