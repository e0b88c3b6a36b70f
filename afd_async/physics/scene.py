"""What a prompt means: the parsed scene and the numbers that turn words into physics.

A `Scene` is the grammar's output and the simulator's input. It holds *words*
(enumerated `Literal` values), never numbers, so that two prompts that say the
same thing in a different order are the same scene and seed the same jitter. The
tables below are the single place where a word becomes a number; the world is
the unit square, x right and y down, lengths in frame units, time in seconds.

The defaults are tuned so that motion stays clearly visible after the clip is
downsampled to the student's 32x32 at 8 fps: objects have a radius of 6-10.5 %
of the frame and cross a good fraction of it within 2 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Kind = Literal["ball", "square", "pendulum"]
Motion = Literal["fall", "slide", "collide", "hit", "swing", "throw"]
Size = Literal["small", "medium", "large"]
Mass = Literal["light", "normal", "heavy"]
Start = Literal["top", "top left", "top right", "left", "right", "center"]
Direction = Literal["left", "right"]
Speed = Literal["slow", "normal", "fast"]
Gravity = Literal["low", "normal", "high"]
Friction = Literal["ice", "normal", "rough"]
Restitution = Literal["soft", "normal", "bouncy"]
Length = Literal["short", "normal", "long"]

# Saturated colours that stay far apart in RGB, so the evaluator can segment
# them by nearest colour even in a blurry 32x32 student frame.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (235, 50, 45),
    "blue": (55, 100, 245),
    "green": (50, 205, 70),
    "yellow": (245, 220, 50),
    "purple": (165, 75, 230),
    "orange": (250, 145, 35),
    "cyan": (45, 215, 230),
    "white": (240, 240, 240),
}
# Scene furniture; the evaluator treats these as "not an object".
BACKGROUND_RGB: tuple[int, int, int] = (12, 12, 20)
GROUND_RGB: tuple[int, int, int] = (58, 58, 68)
ROD_RGB: tuple[int, int, int] = (170, 170, 180)

FLOOR_Y = 0.9  # top of the ground; objects rest with their bottom edge here
G_BASE = 9.0  # frame heights / s^2: a drop from the top lands after ~0.39 s
GRAVITY_SCALE: dict[str, float] = {"low": 0.45, "normal": 1.0, "high": 1.7}
RESTITUTION: dict[str, float] = {"soft": 0.35, "normal": 0.65, "bouncy": 0.88}
FRICTION_MU: dict[str, float] = {"ice": 0.006, "normal": 0.06, "rough": 0.18}
SPEED_SCALE: dict[str, float] = {"slow": 0.6, "normal": 1.0, "fast": 1.5}
RADIUS: dict[str, float] = {"small": 0.06, "medium": 0.08, "large": 0.105}
DENSITY: dict[str, float] = {"light": 0.5, "normal": 1.0, "heavy": 3.0}

SLIDE_SPEED = 0.85  # frame widths / s for a sliding object
COLLIDE_SPEED = 1.1  # each of two colliding objects
HIT_SPEED = 1.25  # the moving object of a "hits" scene
DRIFT_SPEED = 0.35  # horizontal drift of a falling object given a direction
REST_SPEED = 0.3  # a natural rebound slower than this settles on the floor

PIVOT = (0.5, 0.12)
ROD_LENGTH: dict[str, float] = {"short": 0.35, "normal": 0.5, "long": 0.65}
SWING_AMPLITUDE_DEG: dict[str, float] = {"slow": 20.0, "normal": 35.0, "fast": 55.0}
# A thrown object leaves the ground straight up and rises this far (frame heights) under the scene's own
# gravity, so "thrown up" stays in the frame in low gravity too; speed words set the height.
THROW_RISE: dict[str, float] = {"slow": 0.3, "normal": 0.45, "fast": 0.6}
ROD_HALF_WIDTH = 0.007
PIVOT_RADIUS = 0.018
SWING_REACH = 0.38  # the bob centre never starts further than this from the pivot's x


def max_swing_amplitude(length: float) -> float:
    """Largest start angle (radians) that keeps the bob inside the frame."""
    return math.asin(min(1.0, SWING_REACH / length))


@dataclass(frozen=True)
class ObjectSpec:
    """One object as the prompt describes it.

    Attributes:
        kind: `ball`, `square` (also "cube", "block", "box": drawn as a flat square) or `pendulum`
            (a bob on a rod; also "a ball on a string").
        colour: a `PALETTE` name.
        size: sets the radius (half side for squares) via `RADIUS`.
        mass: density class; only matters in collisions (mass = density * area).
    """

    kind: Kind
    colour: str
    size: Size = "medium"
    mass: Mass = "normal"

    def __post_init__(self) -> None:
        if self.colour not in PALETTE:
            raise ValueError(f"unknown colour {self.colour!r}; known: {sorted(PALETTE)}")

    @property
    def radius(self) -> float:
        return RADIUS[self.size]

    @property
    def rgb(self) -> tuple[int, int, int]:
        return PALETTE[self.colour]

    @property
    def inertial_mass(self) -> float:
        """Mass in arbitrary units: density times area relative to a medium object."""
        return DENSITY[self.mass] * (self.radius / RADIUS["medium"]) ** 2


@dataclass(frozen=True)
class Scene:
    """A parsed prompt: objects, one motion and the physics words.

    Attributes:
        text: the prompt as written (kept for records; not used to seed jitter).
        motion: what happens (see `afd_async.physics.grammar.GRAMMAR`).
        objects: one object, or two for `collide` / `hit` (mover first; for `collide` the one starting left).
        start: where the (first) object starts; None means the motion's default.
        direction: horizontal direction of motion; None means the default.
        speed: scales launch speeds (swing: amplitude; throw: height, `THROW_RISE`).
        bounces: rebounds before a falling (or thrown) object rests; None: natural settling.
        stops: the prompt said "and stops" (validated, descriptive).
        gravity: scales `G_BASE`.
        friction: floor friction coefficient class.
        restitution: coefficient of restitution class for floor, walls and collisions.
        length: pendulum rod length class.
    """

    text: str
    motion: Motion
    objects: tuple[ObjectSpec, ...]
    start: Start | None = None
    direction: Direction | None = None
    speed: Speed = "normal"
    bounces: int | None = None
    stops: bool = False
    gravity: Gravity = "normal"
    friction: Friction = "normal"
    restitution: Restitution = "normal"
    length: Length = "normal"

    def canonical(self) -> str:
        """An order-independent description of the meaning (not the wording).

        Used to seed the per-(prompt, seed) jitter, so "a red ball falls." and
        "A RED ball falls" produce identical clips.
        """
        objs = ",".join(f"{o.size}/{o.mass}/{o.colour}/{o.kind}" for o in self.objects)
        return (
            f"{self.motion}|{objs}|start={self.start}|dir={self.direction}|speed={self.speed}"
            f"|bounces={self.bounces}|stops={self.stops}|g={self.gravity}|mu={self.friction}"
            f"|e={self.restitution}|len={self.length}"
        )
