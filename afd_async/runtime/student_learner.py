"""The student learner's state and step: wait for D, score, NFT step, soft-update θ_old, publish it.

    for batch: wait for D ≥ W + (s+1)·ratio − k_D → score → NFT step → θ_old soft update → publish θ_old (s+1)
                                                                      (snapshot now; served on a thread while
                                                                       the next batch is trained: background_publish)

With `d_overlap` (D needed only through its scores: reward d_score, loss nft) the wait for D moves into the
step, after its forward passes (`StudentUpdater.nft` asks for the scores last): the same D version, the same
numbers, but the student computes while the D learner finishes the group.

Its step is the synchronous loop's (`train/student_step.py: student_step`), so it computes what `afd sync`
computes on the same batch; what is its own is decoding the fed batch, waiting for D, sending θ_old to the
actors and the status hash. Its loop is `student_learner_role.py`.
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

from afd_async.runtime.background_publish import BackgroundPublisher
from afd_async.runtime.d_history import DHistory
from afd_async.runtime.feed_loop import to_pair_batch
from afd_async.seams import WeightSink, WeightSource
from afd_async.store.keys import RunKeys
from afd_async.train.batch import PairBatch
from afd_async.train.objectives import Rewards
from afd_async.train.student_step import student_step
from afd_async.train.student_update import StudentUpdater
from afd_async.transport import ReceivedBatch, TransportTimeout, WeightsRejected

log = logging.getLogger(__name__)


class _StoppedWaitingForD(Exception):
    """Raised inside a step (before its backward) when the run stops while the step waits for D."""


class StudentLearner:
    """Student learner state: the updater (θ, θ_old, θ_ref, EMA), a local D copy fed by D weights.

    `history` (optional) keeps the D versions used since the last checkpoint, so a resumed
    learner redoes those steps with the same D (`d_history.py`). `rewards` forms the per-clip rewards
    as the objective says (`Objective.make_rewards`: D's scores of the local D copy, the oracle's, none);
    `needs_d` is `Objective.student_waits_for_d`; `d_overlap` waits for D inside the step, when the loss asks for
    D's scores (only right where the loss uses D through `d_score` alone).
    """

    def __init__(self, *, updater: StudentUpdater, d: torch.nn.Module, d_subscriber: Optional[WeightSource],
                 publisher: WeightSink, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], run_seed: int, warmup_groups: int,
                 d_steps_per_batch: int, d_staleness: int, needs_d: bool, pixel_latent: bool, rewards: Rewards,
                 d_timeout_s: float = 600.0, history: Optional[DHistory] = None,
                 device: torch.device | str = "cpu", d_overlap: bool = False) -> None:
        self.updater, self.d, self.d_sub, self.publisher = updater, d, d_subscriber, publisher
        self._background = BackgroundPublisher(publisher)
        self.rewards = rewards
        self.device = torch.device(device)  # where θ and the D copy compute (`train.device`); batches are moved here
        self._r, self.keys, self.encode_text, self.run_seed = client, keys, encode_text, run_seed
        self.warmup_groups, self.ratio, self.k_d = warmup_groups, d_steps_per_batch, d_staleness
        self.needs_d, self.pixel_latent, self.d_timeout_s = needs_d, pixel_latent, d_timeout_s
        self.history = history
        self.d_overlap = d_overlap
        self.d_version = -1
        self._d_fetch_s = 0.0  # of the last `_sync_d`: fetching and loading a D that was already announced
        self._d_received: dict[str, torch.Tensor] = {}
        self.last: dict[str, float] = {}
        self.timing: dict[str, float] = {}

    def publish(self) -> None:
        """Publish θ_old now (start-up, resume): served and announced when this returns."""
        self._publish_in_background({})
        self.flush()

    def flush(self) -> None:
        """Wait for the background publish in flight (the run's end); raises `PublishFailed` if it failed."""
        self._background.flush()

    def close(self) -> None:
        """Finish the publish in flight and stop its thread, before the publisher it uses is closed."""
        self._background.close()

    def _publish_in_background(self, status: dict[str, Any]) -> None:
        # The weights go to the actors over ZeroMQ, stamped with their version (an actor's policy_version).
        # learner_version L itself has one channel, the Redis key: the Lua admission script (runtime/groups.py,
        # g <= L + k, atomic with the group counter) and the feeder's drop-and-count read it there, and no
        # script can read a ZeroMQ announcement. Set after the publish: every L an actor is admitted under is
        # already served. The status hash rides in the same round trip.
        version = self.updater.version

        def announce() -> None:
            pipe = self._r.pipeline(transaction=False)
            pipe.set(self.keys.student_version, version)
            if status:
                pipe.hset(self.keys.status, mapping=status)
            pipe.execute()

        self._background.submit(version, self.updater.old.state_dict(), then=announce)

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
        t0 = time.monotonic()
        try:
            update = self.d_sub.poll_update(timeout_s=30.0)  # returns at once unless a newer version was announced
            if update is not None and update.version > self.d_version:
                self._load_d(update)
        except WeightsRejected as e:  # e.g. a restarted D learner republishing older versions
            log.info("discriminator weights not taken: %s", e)
        self._d_fetch_s = time.monotonic() - t0
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
        self._d_fetch_s, in_step = 0.0, [0.0]
        if not self.d_overlap and not self._sync_d(stop):
            return None
        t1 = time.monotonic()
        step = self.updater.steps

        def d_score() -> torch.Tensor:
            if self.d_overlap:
                tw = time.monotonic()
                ready = self._sync_d(stop)
                in_step[0] = time.monotonic() - tw
                if not ready:
                    raise _StoppedWaitingForD
            return self._d_score(pb)

        try:
            metrics = student_step(self.updater, pb, rewards=self.rewards, d_score=d_score, d=self.d,
                                   run_seed=self.run_seed, step=step)
        except _StoppedWaitingForD:
            return None  # raised before the backward: θ, the optimizer and the versions are unchanged
        t2 = time.monotonic()
        metrics["d_version_used"] = float(self.d_version)
        metrics["staleness_max"] = float(step - int(pb.policy_version.min()))
        self._publish_in_background({"student_steps": self.updater.steps,
                                     "student_loss": metrics.get("student_loss", 0.0)})
        d_s = t1 - t0 + in_step[0]
        self.timing = {"d_fetch": self._d_fetch_s, "d_wait": d_s - self._d_fetch_s, "step": t2 - t1 - in_step[0],
                       "publish": time.monotonic() - t2}
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
