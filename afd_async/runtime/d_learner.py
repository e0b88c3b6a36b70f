"""The D learner's state and step: Bradley–Terry step(s) on a fed batch, then publish D.

    for batch: BT step(s) (+ D probes when due) → publish D (version = step calls made)

Its step is the synchronous loop's (`train/d_step.py: d_steps`), so it computes what `afd sync` computes
on the same batch; what is its own is decoding the fed batch, publishing D and the status hash. Its loop is
`d_learner_role.py`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import redis
import torch

from afd_async.runtime.feed_loop import to_pair_batch
from afd_async.seams import WeightSink
from afd_async.store.keys import RunKeys
from afd_async.runtime.background_probes import BackgroundProbes
from afd_async.train.d_probe_monitor import DProbeMonitor
from afd_async.train.d_step import d_steps
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.transport import ReceivedBatch


class DLearner:
    """Discriminator learner state: the updater, its version, its publisher.

    `probes` (optional) runs the D probes after the step calls the sync loop probes after
    (`train.d_probe_every`); their time is left out of `timing["step"]`. A `BackgroundProbes` runs them on a
    thread on copies of D, so D is published without waiting for them (`background_probes.py` says why).
    """

    def __init__(self, *, updater: DiscriminatorUpdater, publisher: WeightSink, client: redis.Redis, keys: RunKeys,
                 encode_text: Callable[[list[str]], torch.Tensor], warmup_groups: int, steps_per_batch: int,
                 lr_after_warmup: float, pixel_latent: bool, device: torch.device | str = "cpu",
                 probes: Optional[DProbeMonitor | BackgroundProbes] = None) -> None:
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
        calls = 1 if warm else self.ratio
        done = d_steps(self.updater, pb, calls=calls, probes=self.probes)
        self.last = done.last
        self.version += calls  # counts step calls, also at lr 0 (frozen_d) or skipped (d_max_accuracy)
        self.warmup_done += int(warm)
        t1 = time.monotonic()
        self.publish()
        self._r.hset(self.keys.status, mapping={"d_version": self.version, "d_acc": self.last.get("d_acc", 0.0),
                                               "d_loss": self.last.get("d_loss", 0.0)})
        self.timing = {"step": t1 - t0 - done.probe_s, "publish": time.monotonic() - t1}
        return self.last

    def state_dict(self) -> dict[str, Any]:
        """D, its optimizer (lr included), the version and warm-up counters, torch's RNG."""
        return {"updater": self.updater.state_dict(), "version": self.version, "warmup_done": self.warmup_done,
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updater.load_state_dict(state["updater"])
        self.version, self.warmup_done = int(state["version"]), int(state["warmup_done"])
        torch.set_rng_state(state["rng"])
