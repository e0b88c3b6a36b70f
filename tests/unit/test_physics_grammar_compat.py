"""The grammar of issue 17.6 reads more phrasings, but every prompt it read before keeps its scene.

`tests/data/physics_scenes_before_issue17.json` holds `Scene.canonical()` of every shipped train/eval
prompt and of 300 generator prompts, computed with the grammar as it was before issue 17.6. A changed
scene would change the teacher clips, the jitter seeds and every benchmark number of the shipped suites.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afd_async.physics import load_prompt_suite, parse_prompt

BEFORE = json.loads((Path(__file__).parents[1] / "data" / "physics_scenes_before_issue17.json").read_text())


@pytest.mark.parametrize("split", ["train", "eval"])
def test_shipped_suites_parse_to_the_same_scenes_as_before(split: str) -> None:
    records = load_prompt_suite(split)
    assert len(records) == sum(k.startswith(f"{split}/") for k in BEFORE["shipped"])
    changed = []
    for r in records:
        text, canonical = BEFORE["shipped"][f"{split}/{r.prompt_id}"]
        assert text == r.prompt
        if parse_prompt(r.prompt).canonical() != canonical:
            changed.append((r.prompt, canonical, parse_prompt(r.prompt).canonical()))
    assert not changed


def test_generator_prompts_parse_to_the_same_scenes_as_before() -> None:
    changed = [(text, old, parse_prompt(text).canonical()) for text, old in BEFORE["generated"]
               if parse_prompt(text).canonical() != old]
    assert not changed
