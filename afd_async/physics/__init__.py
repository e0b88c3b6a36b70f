"""Procedural physics renderer: the embedded default teacher's generator.

A prompt in a small closed grammar (`GRAMMAR`) is parsed into a `Scene`,
simulated densely (`simulate` -> `GroundTruth`, 1/240 s steps, exact bounce
times, friction stops, momentum-conserving collisions, a rigid pendulum) and
rendered anti-aliased at the renderer's own size and frame rate (`render`;
default 96x96, 24 fps, 2 s: deliberately not the student's). Output is
deterministic per (prompt meaning, seed); seeds jitter start positions and
speeds slightly. `PhysicsOverrides` makes deliberately wrong physics for
pretraining a student that AFD must then correct. Ground truth is for the
evaluator (`afd_async.eval`), never for the student or the discriminator.

Grammar summary (see `GRAMMAR` for the full list)::

    object    [one|two] [small|medium|large] [light|heavy] [colour] [short|long] ball|square|block|pendulum
    motion    falls | bounces [once|twice|three times|four times] | slides | collide | hits | swings
    start     from the top | top left | top right | left | right | center
    direction left | right;  speed: slowly | quickly
    physics   low/high gravity | on ice / on rough ground | bouncy / soft;  and stops, head-on

Examples: "a red ball falls from the top and bounces twice", "a blue square
slides left and stops", "two balls collide head-on", "a pendulum swings".
"""

from __future__ import annotations

from afd_async.physics.grammar import GRAMMAR, PromptError, parse_prompt
from afd_async.physics.raster import frame_times, render, render_prompt
from afd_async.physics.scene import PALETTE, ObjectSpec, Scene
from afd_async.physics.dynamics import simulate
from afd_async.physics.suite import PromptFileError, PromptRecord, load_prompt_file, load_prompt_suite
from afd_async.physics.truth import Event, GroundTruth, ObjectTrack, PhysicsOverrides

__all__ = [
    "GRAMMAR",
    "PALETTE",
    "Event",
    "GroundTruth",
    "ObjectSpec",
    "ObjectTrack",
    "PhysicsOverrides",
    "PromptError",
    "PromptFileError",
    "PromptRecord",
    "Scene",
    "frame_times",
    "load_prompt_file",
    "load_prompt_suite",
    "parse_prompt",
    "render",
    "render_prompt",
    "simulate",
]
