"""The learners' driver (`runtime/feed_loop.FeedLoop`) over the in-process `LocalFeed`: the same loop a learner
runs over ZeroMQ, through the `BatchSource` seam, with no socket."""

from __future__ import annotations

import threading

import pytest
import torch

from afd_async.runtime.feed_loop import FeedLoop
from afd_async.runtime.learner_state import Checkpointer, CheckpointStore
from afd_async.transport import Batch, ReceivedBatch
from afd_async.transport.local import LocalFeed


class _Learner:
    def __init__(self) -> None:
        self.trained: list[int] = []

    def state_dict(self) -> dict:
        return {"trained": torch.tensor(self.trained, dtype=torch.long)}

    def load_state_dict(self, state: dict) -> None:
        self.trained = state["trained"].tolist()


def _group(g: int, token: str) -> Batch:
    return Batch({"x": torch.full((2,), float(g))}, {"group": g, "pair_ids": [f"p{g}"]}, token=token)


@pytest.mark.parametrize("background", [False, True], ids=["inline-checkpoints", "background-checkpoints"])
def test_ordered_mode_trains_each_group_once_in_plan_order_and_acks_after_checkpoints(tmp_path, background) -> None:
    acked: list[str] = []
    learner = _Learner()
    with LocalFeed(on_ack=acked.append) as feed:
        ckpt = Checkpointer(CheckpointStore(tmp_path), learner, every=2, ack=feed.ack, background=background)
        loop = FeedLoop(feed, threading.Event(), checkpointer=ckpt, expected=lambda: len(learner.trained),
                        batch_timeout_s=0.05)
        for g, token in [(1, "g1"), (0, "g0"), (0, "g0-again"), (2, "g2")]:  # early, then a redelivery
            feed.offer(_group(g, token))
        feed.end()

        def process(batch: ReceivedBatch) -> bool:
            learner.trained.append(int(batch.meta["group"]))
            assert acked == [] or len(learner.trained) > 2  # nothing acked before the first checkpoint
            return False

        loop.run(process)
        ckpt.close()
    assert learner.trained == [0, 1, 2]
    assert CheckpointStore(tmp_path).load_latest()[1]["learner"]["trained"].tolist() == [0, 1, 2]
    assert sorted(acked) == ["g0", "g0-again", "g1", "g2"]  # every delivery acked, after the final checkpoint
