"""Student actor: claim a group, roll out θ_old on its prompts, pair with the teacher clips, write pairs.

    while not stopped:
        claim = claims.try_claim()                 # staleness admission (groups.py)
        request teacher clips for the next groups  # teacher actors work ahead
        weights ← newest θ_old, at least version step − k (waits, never rolls out older)
        x̂0 = θ_old.rollout(prompts, noise of (run seed, step))
        wait for the group's teacher clips (cached by (prompt, seed))
        write one pair per row; end the claim's lease

The actor never holds a teacher clip: a pair names it by `teacher_ref`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Optional

import torch

from afd_async.models.tiny_discriminator import video_to_frames
from afd_async.replay.pair import Pair
from afd_async.runtime.groups import EXHAUSTED, GroupClaims
from afd_async.runtime.teacher_requests import TeacherRequests
from afd_async.seams import PairSink, WeightSource
from afd_async.train.plan import Group, Planner
from afd_async.transport import TransportTimeout, WeightsRejected

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class StudentActor:
    """One student actor process's loop (collaborators injected; no sockets opened here).

    Args:
        policy: the student model θ_old (weights swapped in place between rollouts).
        encode_text: prompts → `(B, text_dim)` embeddings.
        subscriber: the student learner's weight announcements (None: never updates, for tests).
        teacher_clip: `(prompt, seed) -> teacher_ref or None` (None while the clip is not cached yet).
        device: where `policy` lives and rolls out (`train.device`); written pairs are CPU tensors.
        metrics: called per written group with (group, rows, seconds of rollout + decode + write, the teacher
            wait excluded, policy version).
        on_weights: called with the seconds of each weight sync, the actor's side of publishing θ_old: fetch,
            hash check and load into the policy when it polls between groups; the load alone when it waited
            for a version (that wait holds the learner's step too).
    """

    def __init__(
        self, *, policy: torch.nn.Module, encode_text: Callable[[list[str]], torch.Tensor], planner: Planner,
        claims: GroupClaims, requests: TeacherRequests, writer: PairSink, subscriber: Optional[WeightSource],
        teacher_clip: Callable[[str, int], Optional[str]], run_seed: int, timesteps: list[int], shift: float,
        num_frames: int, staleness: int, lookahead: int, teacher_wait_s: float, latent_dtype: str = "float32",
        actor_id: Optional[str] = None, metrics: Any = None, weight_timeout_s: float = 600.0,
        device: torch.device | str = "cpu", on_weights: Optional[Callable[[float], None]] = None,
    ) -> None:
        self.policy, self.encode_text, self.planner, self.claims = policy, encode_text, planner, claims
        self.requests, self.writer, self.subscriber, self.teacher_clip = requests, writer, subscriber, teacher_clip
        self.run_seed, self.timesteps, self.shift, self.num_frames = run_seed, list(timesteps), shift, num_frames
        self.k, self.lookahead, self.teacher_wait_s = staleness, lookahead, teacher_wait_s
        self.latent_dtype = _DTYPES[latent_dtype]
        self.actor_id = actor_id or f"student-actor-{uuid.uuid4().hex[:8]}"
        self.metrics, self.weight_timeout_s, self.on_weights = metrics, weight_timeout_s, on_weights
        self.device = torch.device(device)  # where the policy rolls out (`train.device`); pairs are written from CPU
        self.version = 0
        self.rollouts = 0

    # ------------------------------------------------------------------ weights

    def _swap(self, update: Any, t0: float) -> None:
        """Load `update` into the policy; the sync began at `t0` (`time.monotonic()`)."""
        self.policy.load_state_dict({k: v for k, v in update.state_dict.items()}, strict=True)
        self.version = int(update.version)
        if self.on_weights is not None:
            self.on_weights(time.monotonic() - t0)

    def refresh_weights(self, min_version: int, stop: threading.Event) -> bool:
        """Swap in the newest θ_old; wait (bounded, interruptible) until it is at least `min_version`."""
        if self.subscriber is None:
            return self.version >= min_version
        try:
            t0 = time.monotonic()
            update = self.subscriber.poll_update(timeout_s=30.0)  # returns at once unless a newer version was announced
            if update is not None and update.version > self.version:
                self._swap(update, t0)
        except WeightsRejected as e:  # keep the last good weights
            log.warning("rejected student weights: %s", e)
        deadline = time.monotonic() + self.weight_timeout_s
        while self.version < min_version and not stop.is_set():
            try:
                update = self.subscriber.wait_for_version(min_version, timeout_s=1.0)
                self._swap(update, time.monotonic())
            except TransportTimeout:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no student weights >= v{min_version} after {self.weight_timeout_s:.0f}s") from None
            except WeightsRejected as e:
                log.warning("rejected student weights: %s", e)
        return self.version >= min_version

    # ------------------------------------------------------------------ one group

    def rollout_group(self, group: Group) -> torch.Tensor:
        prompts = [p.prompt for p in group.pairs]
        text = self.encode_text(prompts).to(self.device)
        self.policy.eval()
        with torch.no_grad():  # the generator is a CPU one: noise is drawn on CPU and moved, the same on any device
            return self.policy.rollout(text, generator=group.rollout_generator(self.run_seed), timesteps=self.timesteps,
                                       shift=self.shift, num_frames=self.num_frames)

    def wait_teacher(self, group: Group, stop: threading.Event) -> Optional[list[str]]:
        """Teacher refs of every row, or None if stopped / timed out."""
        deadline = time.monotonic() + self.teacher_wait_s
        refs: dict[tuple[str, int], str] = {}
        wanted = {(p.prompt, p.teacher_seed) for p in group.pairs}
        delay = 0.01
        while not stop.is_set():
            for key in wanted - refs.keys():
                ref = self.teacher_clip(*key)
                if ref is not None:
                    refs[key] = ref
            if len(refs) == len(wanted):
                return [refs[(p.prompt, p.teacher_seed)] for p in group.pairs]
            if time.monotonic() > deadline:
                log.warning("group %d: teacher clips missing after %.0fs", group.index, self.teacher_wait_s)
                return None
            stop.wait(delay)  # polling the cache: back off up to 0.5 s
            delay = min(0.5, delay * 1.5)
        return None

    def write_group(self, group: Group, video: torch.Tensor, refs: list[str], requested_at: float) -> None:
        rgb = video_to_frames(self.policy.decode(video).cpu())  # D's video: the Wan student's latents decoded here, once
        video = video.cpu()  # pairs go to Redis from CPU tensors
        now = time.time()
        self.writer.write_many([Pair(  # the group in one round trip: its rows appear together
            pair_id=f"g{group.index}-r{i}-v{self.version}", prompt_id=row.prompt_id, prompt=row.prompt,
            teacher_ref=ref, student_latent=video[i].to(self.latent_dtype).contiguous(), student_rgb=rgb[i],
            policy_version=self.version, actor_id=self.actor_id, seed=group.step, created_at=now,
            teacher_requested_at=requested_at, group=group.index, group_row=i, group_size=len(group.pairs),
        ) for i, (row, ref) in enumerate(zip(group.pairs, refs))])

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, *, on_group: Optional[Callable[[int], None]] = None) -> int:
        """Roll out groups until the plan is exhausted or `stop` is set; returns groups written."""
        written = 0
        while not stop.is_set():
            claim, code = self.claims.try_claim()
            if claim is None:
                if code == EXHAUSTED:
                    return written
                self.refresh_weights(self.version, stop)  # not admitted: learner is behind; pick up new weights
                stop.wait(0.05)
                continue
            group = self.planner.group(claim.group)
            requested_at = time.time()
            self.requests.ensure(claim.group, self.lookahead + 1)
            if not self.refresh_weights(self.planner.min_policy_version(claim.group, self.k), stop):
                self.claims.reroll(claim.group)  # stopped while waiting: hand the group back
                break
            t0 = time.monotonic()
            video = self.rollout_group(group)
            t_wait = time.monotonic()
            refs = self.wait_teacher(group, stop)
            if refs is None:
                self.claims.reroll(claim.group)
                continue
            t0 += time.monotonic() - t_wait  # the teacher wait is not the actor's work
            self.write_group(group, video, refs, requested_at)
            self.claims.done(claim.group)
            written += 1
            self.rollouts += len(group.pairs)
            if self.metrics is not None:
                self.metrics(group, len(group.pairs), time.monotonic() - t0, self.version)
            if on_group:
                on_group(claim.group)
        return written
