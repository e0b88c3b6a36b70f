"""Simulate a scene densely (1/240 s) with exact piecewise-constant-acceleration steps.

Within a step every free object has constant acceleration (gravity while
airborne, kinetic friction -sign(vx) * mu * g while on the floor), so positions
are advanced in closed form and the floor contact time is solved exactly from
the quadratic; a fall therefore follows y0 + g t^2 / 2 to machine precision and
bounce times are exact. Walls reflect with the restitution. Two objects collide
with an impulse along the line of centres that conserves momentum and scales
the normal relative speed by the restitution. The pendulum is a rigid rod
(theta'' = -g/L sin theta) integrated with RK4.

Bounce counts are exact by construction: "bounces twice" rebounds twice and
the third floor contact is perfectly inelastic (the object rests). With no
count the object rebounds until a rebound would be slower than `REST_SPEED`.
"""

from __future__ import annotations

import math

import numpy as np

from afd_async.physics.layout import Body, initial_bodies, initial_swing, scene_rng
from afd_async.physics.scene import FLOOR_Y, FRICTION_MU, G_BASE, GRAVITY_SCALE, PIVOT, REST_SPEED, RESTITUTION
from afd_async.physics.scene import Scene
from afd_async.physics.truth import Event, GroundTruth, ObjectTrack, PhysicsOverrides

DT = 1.0 / 240.0
MAX_SECONDS = 120.0


def simulate(scene: Scene, *, seed: int, seconds: float, physics: PhysicsOverrides | None = None) -> GroundTruth:
    """Simulate `scene` for `seconds`, deterministically per (scene meaning, seed).

    Args:
        scene: from `parse_prompt`.
        seed: jitters start positions and speeds slightly.
        seconds: duration to simulate (0 < seconds <= 120).
        physics: scale factors for deliberately wrong physics; None is real physics.

    Returns:
        Dense trajectories at `DT` plus events.
    """
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {seconds}")
    physics = physics or PhysicsOverrides()
    rng = scene_rng(scene, seed)
    g = G_BASE * GRAVITY_SCALE[scene.gravity] * physics.gravity_scale
    e = float(np.clip(RESTITUTION[scene.restitution] * physics.restitution_scale, 0.0, 1.0))
    mu = FRICTION_MU[scene.friction] * physics.friction_scale
    steps = max(1, math.ceil(seconds / DT - 1e-9))
    times = np.arange(steps + 1) * DT
    tracks = tuple(
        ObjectTrack(kind=o.kind, colour=o.colour, rgb=o.rgb, radius=o.radius, mass=o.inertial_mass)
        for o in scene.objects
    )
    common = dict(scene=scene, seed=seed, physics=physics, objects=tracks, times=times, gravity=g,
                  restitution=e, friction=mu, seconds=float(seconds), dt=DT)
    if scene.motion == "swing":
        start = initial_swing(scene, rng, physics.speed_scale)
        pos, vel, events = _swing(start.theta, start.length, g, steps)
        return GroundTruth(positions=pos, velocities=vel, events=tuple(events), floor_y=None,
                           pivot=PIVOT, rod_length=start.length, **common)
    bodies = initial_bodies(scene, rng, physics.speed_scale)
    pos, vel, events = _free(bodies, scene.bounces, g, e, mu, steps)
    return GroundTruth(positions=pos, velocities=vel, events=tuple(events), floor_y=FLOOR_Y,
                       pivot=None, rod_length=None, **common)


def _free(
    bodies: list[Body], bounces: int | None, g: float, e: float, mu: float, steps: int
) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    pos = np.empty((len(bodies), steps + 1, 2))
    vel = np.empty_like(pos)
    events: list[Event] = []
    for k, b in enumerate(bodies):
        pos[k, 0], vel[k, 0] = (b.x, b.y), (b.vx, b.vy)
    for n in range(steps):
        t0 = n * DT
        for k, b in enumerate(bodies):
            if b.grounded:
                _slide(b, k, t0, DT, mu * g, events)
            else:
                _fly(b, k, t0, DT, g, e, mu, bounces, events)
            _walls(b, k, t0 + DT, e, events)
        for i in range(len(bodies)):
            for j in range(i + 1, len(bodies)):
                _collide(bodies[i], bodies[j], i, j, t0, e, events)
        for k, b in enumerate(bodies):
            pos[k, n + 1], vel[k, n + 1] = (b.x, b.y), (b.vx, b.vy)
    events.sort(key=lambda ev: ev.time_s)
    return pos, vel, events


def _slide(b: Body, k: int, t0: float, dt: float, decel: float, events: list[Event]) -> None:
    """Advance a grounded body under kinetic friction, stopping exactly when vx hits 0."""
    b.vy, b.y = 0.0, FLOOR_Y - b.radius
    if b.vx == 0.0:
        return
    s = math.copysign(1.0, b.vx)
    if decel > 0 and abs(b.vx) <= decel * dt:
        t_stop = abs(b.vx) / decel
        b.x += b.vx * t_stop / 2.0
        b.vx = 0.0
        events.append(Event("stop", t0 + t_stop, (k,)))
        return
    b.x += b.vx * dt - s * decel * dt * dt / 2.0
    b.vx -= s * decel * dt


def _fly(
    b: Body, k: int, t0: float, dt: float, g: float, e: float, mu: float, bounces: int | None,
    events: list[Event],
) -> None:
    """Ballistic step; on reaching the floor, rebound or rest at the exact contact time."""
    y_floor = FLOOR_Y - b.radius
    y1 = b.y + b.vy * dt + g * dt * dt / 2.0
    if y1 <= y_floor:
        b.x += b.vx * dt
        b.y, b.vy = y1, b.vy + g * dt
        if b.y < b.radius and b.vy < 0:  # ceiling
            b.y, b.vy = 2 * b.radius - b.y, -e * b.vy
        return
    gap = y_floor - b.y
    if g > 0:
        tc = (-b.vy + math.sqrt(max(b.vy * b.vy + 2.0 * g * gap, 0.0))) / g
    else:
        tc = gap / b.vy if b.vy > 0 else 0.0
    tc = min(max(tc, 0.0), dt)
    v_in = b.vy + g * tc
    b.x += b.vx * tc
    counted_out = bounces is not None and b.bounces >= bounces
    v_out = e * v_in
    if counted_out or v_out < 1e-3 or (bounces is None and v_out < REST_SPEED):
        events.append(Event("rest", t0 + tc, (k,), {"speed_in": v_in}))
        b.y, b.vy, b.grounded, b.resting = y_floor, 0.0, True, True
        _slide(b, k, t0 + tc, dt - tc, mu * g, events)
        return
    b.bounces += 1
    events.append(Event("bounce", t0 + tc, (k,), {"speed_in": v_in, "speed_out": v_out}))
    rem = dt - tc
    b.x += b.vx * rem
    b.y = y_floor - v_out * rem + g * rem * rem / 2.0
    b.vy = -v_out + g * rem


def _walls(b: Body, k: int, t: float, e: float, events: list[Event]) -> None:
    for side, limit in (("left", b.radius), ("right", 1.0 - b.radius)):
        past = (b.x < limit) if side == "left" else (b.x > limit)
        toward = (b.vx < 0) if side == "left" else (b.vx > 0)
        if past and toward:
            events.append(Event("wall", t, (k,), {"speed_in": abs(b.vx), "right": float(side == "right")}))
            b.x = limit + e * (limit - b.x)
            b.vx = -e * b.vx


def _collide(a: Body, b: Body, i: int, j: int, t0: float, e: float, events: list[Event]) -> None:
    """Impulse along the line of centres (every object collides as a disc of its radius)."""
    dx, dy = b.x - a.x, b.y - a.y
    dist = math.hypot(dx, dy)
    overlap = a.radius + b.radius - dist
    if overlap <= 0 or dist == 0.0:
        return
    nx, ny = dx / dist, dy / dist
    v_rel = (b.vx - a.vx) * nx + (b.vy - a.vy) * ny
    inv_a, inv_b = 1.0 / a.mass, 1.0 / b.mass
    if v_rel < 0:
        before = (a.mass * a.vx + b.mass * b.vx, a.mass * a.vy + b.mass * b.vy)
        impulse = -(1.0 + e) * v_rel / (inv_a + inv_b)
        a.vx, a.vy = a.vx - impulse * inv_a * nx, a.vy - impulse * inv_a * ny
        b.vx, b.vy = b.vx + impulse * inv_b * nx, b.vy + impulse * inv_b * ny
        after = (a.mass * a.vx + b.mass * b.vx, a.mass * a.vy + b.mass * b.vy)
        t_hit = t0 + DT - min(overlap / -v_rel, DT)
        events.append(Event("collision", t_hit, (i, j), {
            "px_before": before[0], "py_before": before[1], "px_after": after[0], "py_after": after[1],
            "relative_speed": -v_rel,
        }))
        for body in (a, b):  # the floor's normal force absorbs any downward kick
            if body.grounded and body.vy > 0:
                body.vy = 0.0
            elif body.grounded and body.vy < 0 and not body.resting:
                body.grounded = False
    # Separate overlapping bodies in proportion to inverse mass.
    share_a = inv_a / (inv_a + inv_b)
    a.x, a.y = a.x - overlap * share_a * nx, a.y - overlap * share_a * ny
    b.x, b.y = b.x + overlap * (1 - share_a) * nx, b.y + overlap * (1 - share_a) * ny
    for body in (a, b):
        body.y = min(body.y, FLOOR_Y - body.radius)


def _swing(theta0: float, length: float, g: float, steps: int) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    """RK4 on theta'' = -(g / L) sin(theta); bob at pivot + L (sin theta, cos theta)."""
    k = g / length

    def acc(th: float) -> float:
        return -k * math.sin(th)

    th = np.empty(steps + 1)
    om = np.empty(steps + 1)
    th[0], om[0] = theta0, 0.0
    events: list[Event] = []
    for n in range(steps):
        a, w = th[n], om[n]
        k1a, k1w = w, acc(a)
        k2a, k2w = w + DT / 2 * k1w, acc(a + DT / 2 * k1a)
        k3a, k3w = w + DT / 2 * k2w, acc(a + DT / 2 * k2a)
        k4a, k4w = w + DT * k3w, acc(a + DT * k3a)
        th[n + 1] = a + DT / 6 * (k1a + 2 * k2a + 2 * k3a + k4a)
        om[n + 1] = w + DT / 6 * (k1w + 2 * k2w + 2 * k3w + k4w)
        if th[n] != 0 and np.sign(th[n + 1]) != np.sign(th[n]):
            frac = th[n] / (th[n] - th[n + 1])
            events.append(Event("pendulum_bottom", (n + frac) * DT, (0,), {"omega": float(om[n + 1])}))
        if n > 0 and om[n] != 0 and np.sign(om[n + 1]) != np.sign(om[n]):
            frac = om[n] / (om[n] - om[n + 1])
            events.append(Event("pendulum_turn", (n + frac) * DT, (0,), {"angle": float(th[n + 1])}))
    px, py = PIVOT
    pos = np.stack([px + length * np.sin(th), py + length * np.cos(th)], axis=-1)[None]
    vel = np.stack([length * om * np.cos(th), -length * om * np.sin(th)], axis=-1)[None]
    return pos, vel, events
