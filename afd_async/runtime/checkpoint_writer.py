"""Writing learner checkpoints off the step's critical path: snapshot on the step thread, write on a thread.

    for step:
        learner step
        writer.wait()                     # the write submitted a step or more ago: durable (raises its error)
        tensors, skeleton = flatten_state(state)   # the snapshot: a CPU copy of every tensor, cheap
        writer.submit(index, tensors, skeleton)    # safetensors + fsync + atomic rename, on the thread
    writer.close()                        # at stop: the last write is on disk before the process exits

Why: the write is a serialisation and two fsyncs (tens of milliseconds for the tiny models, seconds
for a real one), all of it the learner's idle time when done inline. The snapshot is what makes
the thread safe: it is taken before the next step changes the state, and nothing else refers to it.

At most one write is in flight and a write that raised is raised, as `CheckpointFailed`, by the next
`wait` or `close` (`one_in_flight.py`, the mechanism the θ_old publisher uses too); so two writes never race
for the folder, and even a learner that dies of an exception finishes the file it was writing (atomic either
way: a half-written one is a tmp folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from afd_async.runtime.one_in_flight import OneInFlight

__all__ = ["CheckpointFailed", "CheckpointWriter"]

WriteFn = Callable[[int, dict[str, torch.Tensor], Any], Path]


class CheckpointFailed(RuntimeError):
    """A background checkpoint write raised; the cause is chained."""


class CheckpointWriter:
    """Runs `write(index, tensors, skeleton)` (`CheckpointStore.write`) on one thread, one call at a time.

    Args:
        write: writes a flattened state as checkpoint `index` and returns its folder.
    """

    def __init__(self, write: WriteFn) -> None:
        self._write = write
        self._worker = OneInFlight("checkpoint-write", error=CheckpointFailed, what="learner checkpoint",
                                   busy_as="still being written")

    @property
    def busy(self) -> bool:
        """A write was submitted and not yet waited for (it may have finished meanwhile)."""
        return self._worker.busy

    def submit(self, index: int, tensors: dict[str, torch.Tensor], skeleton: Any) -> None:
        """Start writing checkpoint `index` from a snapshot nobody else mutates.

        Raises:
            RuntimeError: a write is still in flight (`wait` for it first: never two writes at once).
        """
        self._worker.submit(index, self._write, index, tensors, skeleton)

    def wait(self) -> Optional[Path]:
        """Block until the write in flight is on disk; its folder, or None when none was in flight.

        Raises:
            CheckpointFailed: the write raised (raised once; the writer is free again).
        """
        return self._worker.wait()

    def close(self) -> None:
        """Finish the write in flight (raising its error), then stop the thread."""
        self._worker.close()
