"""The two learners' loops over a feed: batches in, optimizer steps, versioned weights out.

    D learner:       for batch: BT step(s) (+ D probes when due) → publish D (version = updates made)
    student learner: for batch: wait for D ≥ W + (s+1)·ratio − k_D → score → NFT step
                     → θ_old soft update → publish θ_old (version s+1)
    both:            every `train.checkpoint_every` groups: checkpoint → ack the groups it covers

Both reuse the synchronous loop's updaters (`train/`), so the async system
computes exactly what `afd sync` computes on the same batch. Acks wait for the
checkpoint that includes the step (`learner_state.py` states the invariant), so
a learner killed at any instant resumes without losing or repeating a group.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Optional

import redis
import torch

from afd_async.models.tiny_discriminator import frames_to_video
from afd_async.runtime.busy import BusyMeter
from afd_async.runtime.d_history import DHistory
from afd_async.store.keys import RunKeys
from afd_async.runtime.learner_state import Checkpointer
from afd_async.train.batch import PairBatch
from afd_async.train.d_probe_monitor import DProbeMonitor
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.objectives import Rewards
from afd_async.train.seeding import step_generator
from afd_async.train.student_update import StudentUpdater
from afd_async.transport import (FeedClient, FeedEnded, ReceivedBatch, TransportTimeout, WeightPublisher, WeightsRejected,
                                 WeightSubscriber)

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

    def __init__(self, feed: FeedClient, stop: threading.Event, *, checkpointer: Checkpointer,
                 timing: Callable[[], dict[str, float]] = dict, expected: Optional[Callable[[], int]] = None,
                 batch_timeout_s: float = 1.0, max_hold: int = 16, hold_timeout_s: float = 120.0,
                 warm_batches: int = 1) -> None:
        self.feed, self.stop, self.ckpt, self.timing = feed, stop, checkpointer, timing
        self.expected, self.batch_timeout_s, self.max_hold = expected, batch_timeout_s, max_hold
        self.hold_timeout_s = hold_timeout_s
        self._last_arrival = time.monotonic()
        self.busy = BusyMeter(warm_batches)
        self.wait_s = 0.0  # the last trained batch's wait for the feed
        self.checkpoint_s = 0.0  # the last checkpoint's write time
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


class DLearner:
    """Discriminator learner state: the updater, its version, its publisher.

    `probes` (optional) runs the D probes after the step calls the sync loop probes after
    (`train.d_probe_every`); their time is left out of `timing["step"]`.
    """

    def __init__(self, *, updater: DiscriminatorUpdater, publisher: WeightPublisher, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], warmup_groups: int, steps_per_batch: int,
                 lr_after_warmup: float, pixel_latent: bool, device: torch.device | str = "cpu",
                 probes: Optional[DProbeMonitor] = None) -> None:
        self.updater, self.publisher, self._r, self.keys = updater, publisher, client, keys
        self.device = torch.device(device)  # where D computes (`train.device`); batches are moved here
        self.encode_text, self.warmup_groups, self.ratio = encode_text, warmup_groups, steps_per_batch
        self.lr_after_warmup, self.pixel_latent = lr_after_warmup, pixel_latent
        self.probes = probes
        self.version = 0
        self.warmup_done = 0
        self.last: dict[str, float] = {}
        self.timing: dict[str, float] = {}

    def publish(self) -> None:
        # D's version travels with its weights only (ZeroMQ, to the student learner); the launcher's progress
        # figure is the status hash's `d_version`. No Redis key: no role reads D's version from Redis.
        self.publisher.publish(self.version, self.updater.d.state_dict())

    def process(self, batch: ReceivedBatch) -> dict[str, float]:
        pb = to_pair_batch(batch, self.encode_text, pixel_latent=self.pixel_latent, device=self.device)
        warm = batch.meta["phase"] == "warmup"
        if not warm and self.warmup_done >= self.warmup_groups and self.updater.lr != self.lr_after_warmup:
            self.updater.set_lr(self.lr_after_warmup)
        t0 = time.monotonic()
        probe_s = 0.0
        for _ in range(1 if warm else self.ratio):
            self.last = self.updater.step(pb)
            self.version += 1  # counts step calls, also at lr 0 (frozen_d) or skipped (d_max_accuracy): version arithmetic holds
            if self.probes is not None:
                tp = time.monotonic()
                self.probes.after_step(self.updater, pb)
                probe_s += time.monotonic() - tp
        self.warmup_done += int(warm)
        t1 = time.monotonic()
        self.publish()
        self._r.hset(self.keys.status, mapping={"d_version": self.version, "d_acc": self.last.get("d_acc", 0.0),
                                               "d_loss": self.last.get("d_loss", 0.0)})
        self.timing = {"step": t1 - t0 - probe_s, "publish": time.monotonic() - t1}
        return self.last

    def state_dict(self) -> dict[str, Any]:
        """D, its optimizer (lr included), the version and warm-up counters, torch's RNG."""
        return {"updater": self.updater.state_dict(), "version": self.version, "warmup_done": self.warmup_done,
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updater.load_state_dict(state["updater"])
        self.version, self.warmup_done = int(state["version"]), int(state["warmup_done"])
        torch.set_rng_state(state["rng"])


class StudentLearner:
    """Student learner state: the updater (θ, θ_old, θ_ref, EMA), a local D copy fed by D weights.

    `history` (optional) keeps the D versions used since the last checkpoint, so a resumed
    learner redoes those steps with the same D (`d_history.py`). `rewards` forms the per-clip rewards
    as the objective says (`Objective.make_rewards`: D's scores of the local D copy, the oracle's, none);
    `needs_d` is `Objective.student_waits_for_d`.
    """

    def __init__(self, *, updater: StudentUpdater, d: torch.nn.Module, d_subscriber: Optional[WeightSubscriber],
                 publisher: WeightPublisher, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], run_seed: int, warmup_groups: int,
                 d_steps_per_batch: int, d_staleness: int, needs_d: bool, pixel_latent: bool, rewards: Rewards,
                 d_timeout_s: float = 600.0, history: Optional[DHistory] = None,
                 device: torch.device | str = "cpu") -> None:
        self.updater, self.d, self.d_sub, self.publisher = updater, d, d_subscriber, publisher
        self.rewards = rewards
        self.device = torch.device(device)  # where θ and the D copy compute (`train.device`); batches are moved here
        self._r, self.keys, self.encode_text, self.run_seed = client, keys, encode_text, run_seed
        self.warmup_groups, self.ratio, self.k_d = warmup_groups, d_steps_per_batch, d_staleness
        self.needs_d, self.pixel_latent, self.d_timeout_s = needs_d, pixel_latent, d_timeout_s
        self.history = history
        self.d_version = -1
        self._d_received: dict[str, torch.Tensor] = {}
        self.last: dict[str, float] = {}
        self.timing: dict[str, float] = {}

    def publish(self) -> None:
        # The weights go to the actors over ZeroMQ, stamped with their version (an actor's policy_version).
        # learner_version L itself has one channel, the Redis key: the Lua admission script (runtime/groups.py,
        # g <= L + k, atomic with the group counter) and the feeder's drop-and-count read it there, and no
        # script can read a ZeroMQ announcement. Set after the publish: every L an actor is admitted under is
        # already served.
        self.publisher.publish(self.updater.version, self.updater.old.state_dict())
        self._r.set(self.keys.student_version, self.updater.version)

    def _sync_d(self, stop: threading.Event) -> bool:
        """Load D weights at least as new as the sync loop would have used, minus k_D; False if stopped first."""
        if not self.needs_d or self.d_sub is None:
            return True
        step = self.updater.steps
        if self.history is not None:
            hit = self.history.lookup(step)  # a redone step: the D its first attempt used
            if hit is not None:
                self._load_d(SimpleNamespace(version=hit[0], state_dict=hit[1]))
                return True
            if step <= self.history.redo_until:
                return True  # the first attempt kept its D at this step
        before = self.d_version
        need = self.warmup_groups + (step + 1) * self.ratio - self.k_d
        try:
            update = self.d_sub.poll_update(timeout_s=30.0)  # returns at once unless a newer version was announced
            if update is not None and update.version > self.d_version:
                self._load_d(update)
        except WeightsRejected as e:  # e.g. a restarted D learner republishing older versions
            log.info("discriminator weights not taken: %s", e)
        deadline = time.monotonic() + self.d_timeout_s
        while self.d_version < need and not stop.is_set():
            try:
                self._load_d(self.d_sub.wait_for_version(need, timeout_s=1.0))
            except TransportTimeout:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no discriminator >= v{need} after {self.d_timeout_s:.0f}s") from None
        if self.d_version < need:
            return False
        if self.history is not None and self.d_version != before:
            self.history.record(step, self.d_version, self._d_received)
        return True

    def _load_d(self, update: Any) -> None:
        self._d_received = dict(update.state_dict)  # what the D learner published (kept for the D history)
        self.d.load_state_dict(self._d_received, strict=True)
        self.d_version = int(update.version)

    def process(self, batch: ReceivedBatch, stop: threading.Event) -> Optional[dict[str, float]]:
        """One student step on `batch`; None when `stop` came while waiting for D (nothing changed)."""
        pb = to_pair_batch(batch, self.encode_text, pixel_latent=self.pixel_latent, device=self.device)
        t0 = time.monotonic()
        if not self._sync_d(stop):
            return None
        t1 = time.monotonic()
        scores = self.rewards(pb, lambda: self._d_score(pb))
        step = self.updater.steps
        metrics = self.updater.step(pb, scores=scores, d=self.d, generator=step_generator(self.run_seed, step, "train"))
        metrics["policy_version"] = float(self.updater.publish())
        t2 = time.monotonic()
        metrics["d_version_used"] = float(self.d_version)
        metrics["staleness_max"] = float(step - int(pb.policy_version.min()))
        self.publish()
        self._r.hset(self.keys.status, mapping={"student_steps": self.updater.steps,
                                               "student_loss": metrics.get("student_loss", 0.0)})
        self.timing = {"d_wait": t1 - t0, "step": t2 - t1, "publish": time.monotonic() - t2}
        self.last = metrics
        return metrics

    def _d_score(self, pb: PairBatch) -> torch.Tensor:
        """`(B,)` scores of the local D copy on the student clips (no grad)."""
        self.d.eval()
        with torch.no_grad():
            return self.d.score(pb.student_rgb, prompts=pb.prompts, text=pb.text).float()

    def state_dict(self) -> dict[str, Any]:
        """θ, θ_old, θ_ref, EMA, optimizer, steps and version (the updater's), the D copy and its version, RNG."""
        return {"updater": self.updater.state_dict(), "d": self.d.state_dict(), "d_version": self.d_version,
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updater.load_state_dict(state["updater"])
        self.d.load_state_dict(state["d"], strict=True)
        self.d_version = int(state["d_version"])
        torch.set_rng_state(state["rng"])


def d_copy(d: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(d).requires_grad_(False)
