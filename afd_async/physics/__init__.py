"""Procedural physics renderer: the embedded default teacher's generator.

A prompt in plain phrasing (`GRAMMAR`: a closed vocabulary with synonyms,
fillers, passives and free word order) is parsed into a `Scene`, simulated
densely (`simulate` -> `GroundTruth`, 1/240 s steps, exact bounce times,
friction stops, momentum-conserving collisions, a rigid pendulum) and rendered
anti-aliased at the renderer's own size and frame rate (`render`; default
96x96, 24 fps, 2 s: deliberately not the student's). Output is deterministic
per (prompt meaning, seed); seeds jitter start positions and speeds slightly.
`PhysicsOverrides` makes deliberately wrong physics for pretraining a student
that AFD must then correct. Ground truth is for the evaluator
(`afd_async.eval`), never for the student or the discriminator.

What it draws: a ball or square (cube, block, box) that falls and bounces, is
thrown up, slides or rolls; two that collide or where one hits the other; a
pendulum (a ball on a string) that swings. `python -m afd_async.physics` prints
the grammar; `python -m afd_async.physics "PROMPT"` the scene a prompt means.

Examples: "a blue ball drops from the top right and bounces twice on the
ground", "a red cube slides to the left and slows down because of friction",
"a blue ball is hit by a red ball", "a pendulum on a long rope swings widely",
"a ball is thrown up and falls down". Prompt files: `prompt_file`.
"""

from __future__ import annotations

from afd_async.physics.grammar import GRAMMAR, parse_prompt
from afd_async.physics.prompt_error import PromptError
from afd_async.physics.raster import frame_times, render, render_prompt
from afd_async.physics.scene import PALETTE, ObjectSpec, Scene
from afd_async.physics.dynamics import simulate
from afd_async.physics.prompt_file import (
    LineProblem,
    PromptFileError,
    PromptFileReport,
    PromptRecord,
    load_prompt_file,
    read_prompt_file,
)
from afd_async.physics.suite import load_prompt_suite
from afd_async.physics.truth import Event, GroundTruth, ObjectTrack, PhysicsOverrides

__all__ = [
    "GRAMMAR",
    "PALETTE",
    "Event",
    "GroundTruth",
    "LineProblem",
    "ObjectSpec",
    "ObjectTrack",
    "PhysicsOverrides",
    "PromptError",
    "PromptFileError",
    "PromptFileReport",
    "PromptRecord",
    "Scene",
    "frame_times",
    "load_prompt_file",
    "load_prompt_suite",
    "parse_prompt",
    "read_prompt_file",
    "render",
    "render_prompt",
    "simulate",
]
