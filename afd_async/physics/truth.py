"""Ground truth: what really happened in a simulated scene, for the evaluator only.

The student and the discriminator only ever see pixels; the evaluator compares
the pixels it extracts against these dense trajectories at the clip's own
frame times (frame `i` shows time `i / fps`), and later metrics read the
recorded events (bounces, stops, collisions, pendulum crossings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from afd_async.physics.scene import Kind, Scene

EventKind = Literal["bounce", "rest", "wall", "stop", "collision", "pendulum_bottom", "pendulum_turn"]


@dataclass(frozen=True)
class PhysicsOverrides:
    """Scale factors that make deliberately wrong physics (for pretraining a student
    that the adversarial phase must then correct).

    Attributes:
        gravity_scale: multiplies gravitational acceleration.
        restitution_scale: multiplies the coefficient of restitution (clipped to [0, 1]).
        friction_scale: multiplies the floor friction coefficient.
        speed_scale: multiplies launch speeds and the swing amplitude.
    """

    gravity_scale: float = 1.0
    restitution_scale: float = 1.0
    friction_scale: float = 1.0
    speed_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("gravity_scale", "restitution_scale", "friction_scale", "speed_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"PhysicsOverrides.{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class ObjectTrack:
    """One simulated object's appearance.

    Attributes:
        kind: `ball`, `square` or `pendulum` (drawn as rod + bob).
        colour: palette name.
        rgb: `uint8` colour triple the renderer draws with.
        radius: radius, or half side for squares, in frame units.
        mass: inertial mass (arbitrary units; collisions conserve sum(m * v)).
    """

    kind: Kind
    colour: str
    rgb: tuple[int, int, int]
    radius: float
    mass: float


@dataclass(frozen=True)
class Event:
    """Something a metric may want to check, at the exact simulated time.

    Attributes:
        kind: `bounce` (floor rebound), `rest` (final floor contact), `wall`,
            `stop` (friction brought horizontal motion to zero), `collision`,
            `pendulum_bottom` (bob passes under the pivot), `pendulum_turn`.
        time_s: when, in seconds.
        objects: indices into `GroundTruth.objects`.
        data: kind-specific numbers, e.g. `speed_in`/`speed_out` for a bounce,
            `px_before`, `py_before`, `px_after`, `py_after` (total momentum)
            for a collision, `angle` for a pendulum turn.
    """

    kind: EventKind
    time_s: float
    objects: tuple[int, ...]
    data: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Dense trajectories (step `dt`) and events of one simulated scene.

    Attributes:
        scene: the parsed prompt.
        seed: the jitter seed.
        physics: the overrides used (identity for the real teacher).
        objects: appearance of each object, in scene order.
        times: `(N,)` simulation times `0, dt, 2 dt, ...` up to `seconds`.
        positions: `(K, N, 2)` object centres, normalised (x right, y down).
        velocities: `(K, N, 2)` in frame units per second.
        events: in time order.
        gravity: effective acceleration (frame heights / s^2).
        restitution: effective coefficient of restitution.
        friction: effective floor friction coefficient.
        floor_y: top of the ground, or None (pendulum scenes have no floor).
        pivot: pendulum pivot, or None.
        rod_length: pendulum rod length, or None.
        seconds: simulated duration.
        dt: internal time step.
    """

    scene: Scene
    seed: int
    physics: PhysicsOverrides
    objects: tuple[ObjectTrack, ...]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    events: tuple[Event, ...]
    gravity: float
    restitution: float
    friction: float
    floor_y: float | None
    pivot: tuple[float, float] | None
    rod_length: float | None
    seconds: float
    dt: float

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        """Object colours in order, the evaluator's segmentation targets."""
        return [o.rgb for o in self.objects]

    def positions_at(self, times_s: np.ndarray) -> np.ndarray:
        """Object centres at arbitrary times (linear interpolation of the dense track).

        Args:
            times_s: `(T,)` times in seconds; clamped to `[0, seconds]`.

        Returns:
            `(num_objects, T, 2)` float64, normalised x right, y down, in [0, 1].
        """
        t = np.clip(np.asarray(times_s, dtype=np.float64).reshape(-1), 0.0, self.times[-1])
        out = np.empty((self.num_objects, t.size, 2))
        for k in range(self.num_objects):
            for c in range(2):
                out[k, :, c] = np.interp(t, self.times, self.positions[k, :, c])
        return out

    def events_of(self, kind: EventKind, obj: int | None = None) -> list[Event]:
        """Events of one kind, optionally only those involving object `obj`."""
        return [e for e in self.events if e.kind == kind and (obj is None or obj in e.objects)]

    def bounce_times(self, obj: int = 0) -> list[float]:
        """Times of floor rebounds of object `obj`."""
        return [e.time_s for e in self.events_of("bounce", obj)]

    def stop_time(self, obj: int = 0) -> float | None:
        """When friction first brought object `obj` to a halt, if it did."""
        stops = self.events_of("stop", obj)
        return stops[0].time_s if stops else None

    def collision_time(self) -> float | None:
        """Time of the first object-object collision, if any."""
        hits = self.events_of("collision")
        return hits[0].time_s if hits else None

    @property
    def pendulum_period(self) -> float | None:
        """Measured period: twice the mean gap between passes under the pivot."""
        bottoms = [e.time_s for e in self.events_of("pendulum_bottom")]
        if len(bottoms) < 2:
            return None
        return float(2.0 * np.mean(np.diff(bottoms)))

    @property
    def small_angle_period(self) -> float | None:
        """2 pi sqrt(L / g), the textbook period the measured one should approach."""
        if self.rod_length is None or self.gravity <= 0:
            return None
        return 2.0 * math.pi * math.sqrt(self.rod_length / self.gravity)
