"""Redis keys shared by the roles of one run (one namespace per run id)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunKeys:
    """Every Redis key the runtime uses, under `afd:{run}:`.

    Teacher-side keys (queue, cache, journal, quota) live in `afd_async.teacher`.
    """

    run: str = "default"

    def _k(self, name: str) -> str:
        return f"afd:{self.run}:{name}"

    @property
    def pairs(self) -> str:
        return self._k("pairs")

    @property
    def next_group(self) -> str:
        """Next group index to hand out (INCR)."""
        return self._k("groups:next")

    @property
    def reroll(self) -> str:
        """Groups whose student side must be rolled out again (stale or lost); teacher clips are kept."""
        return self._k("groups:reroll")

    @property
    def requested(self) -> str:
        """Set of group indices whose teacher requests were queued."""
        return self._k("groups:requested")

    @property
    def student_version(self) -> str:
        """learner_version L (published student updates): its one channel.

        The student learner SETs it after each publish; the Lua admission script (`runtime/groups.py`,
        g ≤ L + k) and the feeder's drop-and-count read it. The weights themselves, stamped with their
        version, go to the actors over ZeroMQ. D's version has no key: it travels with D's weights.
        """
        return self._k("version:student")

    @property
    def status(self) -> str:
        """Hash of progress numbers the launcher shows (pairs, steps, D accuracy, ...)."""
        return self._k("status")

    @staticmethod
    def ready_field(role: str) -> str:
        """Field of the status hash a role sets once it has started (its loop begins): the launcher's stall watch
        counts start-up against its own clock until every role has set it."""
        return f"ready:{role}"

    @property
    def run_id(self) -> str:
        """A random id set once per run (SET NX): learner checkpoints of another run are never resumed."""
        return self._k("run_id")

    @property
    def stop(self) -> str:
        """Set when the run is finished: every role winds down."""
        return self._k("stop")
