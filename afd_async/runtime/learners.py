"""The two learners' loops over a feed: batches in, optimizer steps, versioned weights out.

    D learner:       for batch: BT step(s) → publish D (version = updates made) → ack
    student learner: for batch: wait for D ≥ W + (s+1)·ratio − k_D → score → NFT step
                     → θ_old soft update → publish θ_old (version s+1) → ack

Both reuse the synchronous loop's updaters (`train/`), so the async system
computes exactly what `afd sync` computes on the same batch.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any, Callable, Optional

import redis
import torch

from afd_async.models.tiny_discriminator import frames_to_video
from afd_async.runtime.keys import RunKeys
from afd_async.train.batch import PairBatch
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.seeding import step_generator
from afd_async.train.student_update import StudentUpdater
from afd_async.transport import FeedClient, FeedEnded, ReceivedBatch, TransportTimeout, WeightPublisher, WeightSubscriber

log = logging.getLogger(__name__)


def to_pair_batch(batch: ReceivedBatch, encode_text: Callable[[list[str]], torch.Tensor], *, pixel_latent: bool) -> PairBatch:
    """Feed batch → learner `PairBatch` (teacher frames to [-1, 1]; the tiny student's latent is its video)."""
    t = batch.tensors
    meta = batch.meta
    student = torch.as_tensor(t["student"]).float()
    rgb = None if pixel_latent else frames_to_video(torch.as_tensor(t["student_rgb"]))
    return PairBatch(
        prompt_ids=list(meta["prompt_ids"]), prompts=list(meta["prompts"]), text=encode_text(list(meta["prompts"])),
        teacher=frames_to_video(torch.as_tensor(t["teacher"])), student=student, student_rgb=rgb,
        policy_version=torch.tensor(meta["policy_versions"], dtype=torch.long),
    )


class FeedLoop:
    """Shared driver: pull a batch (bounded wait), process it, ack it; stop on `stop` or `done()`."""

    def __init__(self, feed: FeedClient, stop: threading.Event, *, batch_timeout_s: float = 1.0) -> None:
        self.feed, self.stop, self.batch_timeout_s = feed, stop, batch_timeout_s
        self.wait_s = 0.0

    def run(self, process: Callable[[ReceivedBatch], bool]) -> None:
        """`process(batch)` returns True when the learner is done."""
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                batch = self.feed.next(timeout_s=self.batch_timeout_s)
            except TransportTimeout:
                continue
            except FeedEnded:
                return
            self.wait_s = time.monotonic() - t0
            done = process(batch)
            self.feed.ack(batch)
            if done:
                return


class DLearner:
    """Discriminator learner state: the updater, its version, its publisher."""

    def __init__(self, *, updater: DiscriminatorUpdater, publisher: WeightPublisher, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], warmup_groups: int, steps_per_batch: int,
                 lr_after_warmup: float, pixel_latent: bool) -> None:
        self.updater, self.publisher, self._r, self.keys = updater, publisher, client, keys
        self.encode_text, self.warmup_groups, self.ratio = encode_text, warmup_groups, steps_per_batch
        self.lr_after_warmup, self.pixel_latent = lr_after_warmup, pixel_latent
        self.version = 0
        self.warmup_done = 0
        self.last: dict[str, float] = {}

    def publish(self) -> None:
        self.publisher.publish(self.version, self.updater.d.state_dict())
        self._r.set(self.keys.d_version, self.version)

    def process(self, batch: ReceivedBatch) -> dict[str, float]:
        pb = to_pair_batch(batch, self.encode_text, pixel_latent=self.pixel_latent)
        warm = batch.meta["phase"] == "warmup"
        if not warm and self.warmup_done >= self.warmup_groups and self.updater.lr != self.lr_after_warmup:
            self.updater.set_lr(self.lr_after_warmup)
        for _ in range(1 if warm else self.ratio):
            self.last = self.updater.step(pb)
            self.version += 1  # counts updates, also at lr 0 (frozen_d), so version arithmetic holds
        self.warmup_done += int(warm)
        self.publish()
        self._r.hset(self.keys.status, mapping={"d_version": self.version, "d_acc": self.last.get("d_acc", 0.0),
                                               "d_loss": self.last.get("d_loss", 0.0)})
        return self.last


class StudentLearner:
    """Student learner state: the updater (θ, θ_old, θ_ref, EMA), a local D copy fed by D weights."""

    def __init__(self, *, updater: StudentUpdater, d: torch.nn.Module, d_subscriber: Optional[WeightSubscriber],
                 publisher: WeightPublisher, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], run_seed: int, warmup_groups: int,
                 d_steps_per_batch: int, d_staleness: int, needs_d: bool, pixel_latent: bool,
                 d_timeout_s: float = 600.0) -> None:
        self.updater, self.d, self.d_sub, self.publisher = updater, d, d_subscriber, publisher
        self._r, self.keys, self.encode_text, self.run_seed = client, keys, encode_text, run_seed
        self.warmup_groups, self.ratio, self.k_d = warmup_groups, d_steps_per_batch, d_staleness
        self.needs_d, self.pixel_latent, self.d_timeout_s = needs_d, pixel_latent, d_timeout_s
        self.d_version = -1
        self.last: dict[str, float] = {}

    def publish(self) -> None:
        self.publisher.publish(self.updater.version, self.updater.old.state_dict())
        self._r.set(self.keys.student_version, self.updater.version)

    def _sync_d(self, stop: threading.Event) -> None:
        """Load D weights at least as new as the sync loop would have used, minus k_D."""
        if not self.needs_d or self.d_sub is None:
            return
        need = self.warmup_groups + (self.updater.steps + 1) * self.ratio - self.k_d
        update = self.d_sub.poll_update(timeout_s=30.0)  # returns at once unless a newer version was announced
        if update is not None and update.version > self.d_version:
            self._load_d(update)
        deadline = time.monotonic() + self.d_timeout_s
        while self.d_version < need and not stop.is_set():
            try:
                self._load_d(self.d_sub.wait_for_version(need, timeout_s=1.0))
            except TransportTimeout:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no discriminator >= v{need} after {self.d_timeout_s:.0f}s") from None

    def _load_d(self, update: Any) -> None:
        self.d.load_state_dict(dict(update.state_dict), strict=True)
        self.d_version = int(update.version)

    def process(self, batch: ReceivedBatch, stop: threading.Event) -> dict[str, float]:
        pb = to_pair_batch(batch, self.encode_text, pixel_latent=self.pixel_latent)
        self._sync_d(stop)
        scores = None
        if self.updater.objective in ("afd", "frozen_d"):
            self.d.eval()
            with torch.no_grad():
                scores = self.d.score(pb.student_rgb, prompts=pb.prompts, text=pb.text).float()
        step = self.updater.steps
        metrics = self.updater.step(pb, scores=scores, d=self.d, generator=step_generator(self.run_seed, step, "train"))
        metrics["policy_version"] = float(self.updater.publish())
        metrics["d_version_used"] = float(self.d_version)
        metrics["staleness_max"] = float(step - int(pb.policy_version.min()))
        self.publish()
        self._r.hset(self.keys.status, mapping={"student_steps": self.updater.steps,
                                               "student_loss": metrics.get("student_loss", 0.0)})
        self.last = metrics
        return metrics


def d_copy(d: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(d).requires_grad_(False)
