"""How well the grammar reads plain phrasing (issue 17.6), measured on phrasings written by hand.

`tests/data/prompt_phrasings.jsonl`: one phrasing a line with the scene it is meant to describe,
written for this test, not generated from the grammar (`written` says whether before the grammar was
built or after it, untuned). The expected scene is built here from the row alone (objects as
"[size] [mass] [colour] kind", unnamed colours filled red, blue, ... as `Scene` documents), so a
phrasing that parses to any other scene (wrong object, colour, motion, direction, count) fails the
test outright; one the grammar cannot read must be a `PromptError`, and at least 95 % must parse.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

from afd_async.physics import PALETTE, ObjectSpec, PromptError, Scene, parse_prompt
from afd_async.physics.scene import Motion

ROWS = [json.loads(line) for line in
        (Path(__file__).parents[1] / "data" / "prompt_phrasings.jsonl").read_text().splitlines()]
MIN_RATE = 0.95


def expected_scene(row: dict) -> Scene:
    objects = []
    for written in row["objects"]:
        *adjectives, kind = written.split()
        attrs = {"size": "medium", "mass": "normal", "colour": None}
        for a in adjectives:
            attrs["size" if a in ("small", "medium", "large") else "mass" if a in ("light", "heavy") else "colour"] = a
        objects.append((kind, attrs))
    named = [a["colour"] for _, a in objects if a["colour"]]
    free = iter(c for c in PALETTE if c not in named)
    specs = tuple(ObjectSpec(kind=k, colour=a["colour"] or next(free), size=a["size"], mass=a["mass"])  # type: ignore[arg-type]
                  for k, a in objects)
    return Scene(text=row["text"], motion=row["motion"], objects=specs, start=row.get("start"),
                 direction=row.get("direction"), speed=row.get("speed", "normal"), bounces=row.get("bounces"),
                 stops=row.get("stops", False), gravity=row.get("gravity", "normal"),
                 friction=row.get("friction", "normal"), restitution=row.get("restitution", "normal"),
                 length=row.get("length", "normal"))


def test_the_set_is_large_varied_and_covers_every_motion() -> None:
    assert len(ROWS) >= 200
    assert len({r["text"] for r in ROWS}) == len(ROWS)
    assert {r["motion"] for r in ROWS} == set(typing.get_args(Motion))


def test_at_least_95_percent_parse_to_the_intended_scene_and_the_rest_are_prompt_errors() -> None:
    right, errors, wrong = [], [], []
    for row in ROWS:
        try:
            scene = parse_prompt(row["text"])
        except PromptError as e:  # anything else (a crash) fails the test here
            errors.append((row["text"], str(e)))
            continue
        (right if scene.canonical() == expected_scene(row).canonical() else wrong).append(
            (row["text"], scene.canonical(), expected_scene(row).canonical()))
    assert not wrong, "phrasings read as another scene than meant:\n" + "\n".join(map(str, wrong))
    rate = len(right) / len(ROWS)
    print(f"\nphrasings: {len(right)}/{len(ROWS)} = {rate:.1%} parse to the intended scene; {len(errors)} PromptErrors")
    assert rate >= MIN_RATE, errors
    for text, message in errors:  # a clear error: it quotes the prompt and shows one that parses
        assert repr(text) in message and "a prompt that parses" in message
