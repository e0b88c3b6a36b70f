"""Initial conditions: where each object starts and how fast, with per-seed jitter.

The jitter is small (a few % of the frame, +-8 % speed, +-3 degrees) so that a
prompt keeps its meaning across seeds while the teacher still produces varied
clips; it is drawn from a generator seeded by (scene meaning, seed) only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from afd_async.physics.scene import (
    COLLIDE_SPEED,
    DRIFT_SPEED,
    FLOOR_Y,
    G_BASE,
    GRAVITY_SCALE,
    HIT_SPEED,
    ROD_LENGTH,
    SLIDE_SPEED,
    SPEED_SCALE,
    SWING_AMPLITUDE_DEG,
    THROW_RISE,
    Scene,
    max_swing_amplitude,
)

POSITION_JITTER = 0.03
SPEED_JITTER = 0.08
ANGLE_JITTER_DEG = 3.0

FALL_STARTS: dict[str, tuple[float, float]] = {
    "top": (0.5, 0.15),
    "top left": (0.25, 0.15),
    "top right": (0.75, 0.15),
    "left": (0.25, 0.15),
    "right": (0.75, 0.15),
    "center": (0.5, 0.42),
}
SLIDE_STARTS: dict[str, float] = {"left": 0.18, "right": 0.82, "center": 0.5}
THROW_STARTS: dict[str, float] = {"left": 0.25, "right": 0.75, "center": 0.5}
COLLIDE_X = (0.16, 0.84)
HIT_X = (0.16, 0.62)  # mover, target; mirrored when the mover starts on the right


@dataclass
class Body:
    """Mutable state of one free object during simulation (frame units, seconds)."""

    x: float
    y: float
    vx: float
    vy: float
    radius: float
    mass: float
    grounded: bool = False
    bounces: int = 0
    resting: bool = False  # vertical motion finished (counted bounces used up or settled)


@dataclass(frozen=True)
class SwingStart:
    """Initial state of a pendulum: angle from vertical (radians, + is right) and rod length."""

    theta: float
    length: float


def scene_rng(scene: Scene, seed: int) -> np.random.Generator:
    """A generator determined by the scene's meaning and the seed, nothing else."""
    digest = int.from_bytes(hashlib.sha256(scene.canonical().encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed % 2**64, digest]))


def _sign(direction: str) -> float:
    return -1.0 if direction == "left" else 1.0


def initial_bodies(scene: Scene, rng: np.random.Generator, speed_scale: float) -> list[Body]:
    """Bodies for fall / throw / slide / collide / hit scenes, jittered by `rng`.

    Args:
        scene: a non-swing scene.
        rng: from `scene_rng`.
        speed_scale: `PhysicsOverrides.speed_scale`.
    """
    speed = SPEED_SCALE[scene.speed] * speed_scale

    def jx() -> float:
        return float(rng.uniform(-POSITION_JITTER, POSITION_JITTER))

    def jv() -> float:
        return float(1.0 + rng.uniform(-SPEED_JITTER, SPEED_JITTER))

    specs = scene.objects
    if scene.motion == "fall":
        x, y = FALL_STARTS[scene.start or "top"]
        r = specs[0].radius
        vx = _sign(scene.direction) * DRIFT_SPEED * speed * jv() if scene.direction else 0.0
        x = float(np.clip(x + jx(), r, 1 - r))
        y = float(np.clip(y + 0.7 * jx(), r, FLOOR_Y - r))
        return [Body(x, y, vx, 0.0, r, specs[0].inertial_mass)]
    if scene.motion == "throw":  # from the ground, straight up to THROW_RISE (drifting when given a direction)
        r = specs[0].radius
        x = float(np.clip(THROW_STARTS[scene.start or "center"] + jx(), r, 1 - r))
        g = G_BASE * GRAVITY_SCALE[scene.gravity]
        vy = -math.sqrt(2.0 * g * THROW_RISE[scene.speed]) * speed_scale * jv()
        vx = _sign(scene.direction) * DRIFT_SPEED * speed_scale * jv() if scene.direction else 0.0
        return [Body(x, FLOOR_Y - r, vx, vy, r, specs[0].inertial_mass)]
    if scene.motion == "slide":
        if scene.start is None:
            start = {"left": "right", "right": "left", None: "left"}[scene.direction]
        else:
            start = scene.start
        direction = scene.direction or ("left" if start == "right" else "right")
        r = specs[0].radius
        x = SLIDE_STARTS[start] + jx()
        vx = _sign(direction) * SLIDE_SPEED * speed * jv()
        return [Body(x, FLOOR_Y - r, vx, 0.0, r, specs[0].inertial_mass, grounded=True)]
    if scene.motion == "collide":
        return [
            Body(COLLIDE_X[i] + jx(), FLOOR_Y - s.radius, (1 - 2 * i) * COLLIDE_SPEED * speed * jv(), 0.0,
                 s.radius, s.inertial_mass, grounded=True)
            for i, s in enumerate(specs)
        ]
    if scene.motion == "hit":
        mirrored = scene.start == "right" or (scene.start is None and scene.direction == "left")
        xs = [1 - v for v in HIT_X] if mirrored else list(HIT_X)
        vx = (-1.0 if mirrored else 1.0) * HIT_SPEED * speed * jv()
        return [
            Body(xs[0] + jx(), FLOOR_Y - specs[0].radius, vx, 0.0, specs[0].radius, specs[0].inertial_mass,
                 grounded=True),
            Body(xs[1] + jx(), FLOOR_Y - specs[1].radius, 0.0, 0.0, specs[1].radius, specs[1].inertial_mass,
                 grounded=True),
        ]
    raise ValueError(f"initial_bodies does not handle motion {scene.motion!r}")


def initial_swing(scene: Scene, rng: np.random.Generator, speed_scale: float) -> SwingStart:
    """Start angle and rod length for a swing scene (bob on the left unless "from the right")."""
    length = ROD_LENGTH[scene.length]
    amplitude = math.radians(SWING_AMPLITUDE_DEG[scene.speed] * speed_scale)
    amplitude += math.radians(float(rng.uniform(-ANGLE_JITTER_DEG, ANGLE_JITTER_DEG)))
    amplitude = min(amplitude, max_swing_amplitude(length))
    side = 1.0 if scene.start == "right" else -1.0
    return SwingStart(theta=side * max(amplitude, 0.0), length=length)
