"""The prompt grammar: examples parse to the right scenes, everything else is a clear error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afd_async.physics import GRAMMAR, PromptError, parse_prompt
from afd_async.physics.grammar import VOCABULARY
from afd_async.physics.suite import MOTIONS, _one_prompt


def test_issue_examples_parse_to_their_meaning() -> None:
    s = parse_prompt("a red ball falls from the top and bounces twice")
    assert (s.motion, s.bounces, s.start, s.objects[0].colour, s.objects[0].kind) == ("fall", 2, "top", "red", "ball")
    s = parse_prompt("a blue square slides left and stops")
    assert (s.motion, s.direction, s.stops, s.objects[0].kind) == ("slide", "left", True, "square")
    s = parse_prompt("two balls collide head-on")
    assert s.motion == "collide" and len(s.objects) == 2
    assert s.objects[0].colour != s.objects[1].colour  # default colours stay distinguishable
    s = parse_prompt("a pendulum swings")
    assert s.motion == "swing" and s.objects[0].kind == "pendulum"


def test_physics_words_and_object_words() -> None:
    s = parse_prompt("a large heavy green ball hits a small light blue square quickly on rough ground")
    assert s.motion == "hit" and s.speed == "fast" and s.friction == "rough"
    assert [(o.size, o.mass, o.colour, o.kind) for o in s.objects] == [
        ("large", "heavy", "green", "ball"), ("small", "light", "blue", "square")]
    s = parse_prompt("a bouncy ball bounces three times in low gravity")
    assert (s.restitution, s.gravity, s.bounces) == ("bouncy", "low", 3)
    assert parse_prompt("a soft ball bounces").bounces is None  # no count: natural settling
    assert parse_prompt("a ball falls").bounces == 0
    assert parse_prompt("a long pendulum swings slowly in high gravity").length == "long"


def test_wording_case_and_punctuation_do_not_change_meaning() -> None:
    a = parse_prompt("a red ball falls from the top and bounces twice")
    b = parse_prompt("A RED ball, from the top, falls -- then bounces twice!")
    assert a.canonical() == b.canonical()


def test_unknown_word_names_it_and_lists_the_grammar() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt("a purpel ball falls")
    message = str(info.value)
    assert "'purpel'" in message and GRAMMAR in message
    assert "colour" in message and "bounces" in message and "on ice" in message
    with pytest.raises(PromptError, match="'bottom'"):
        parse_prompt("a ball falls from the bottom")


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("", "empty"),
        ("a red ball", "no motion"),
        ("a ball falls and slides", "more than one motion"),
        ("a ball falls twice", "needs the word 'bounces'"),
        ("two balls fall", "needs 1 object"),
        ("a ball collides", "needs 2 object"),
        ("two red balls collide", "distinct colours"),
        ("a pendulum swings on ice", "does not apply to swing"),
        ("a ball swings", "only a pendulum swings"),
        ("a square slides left on ice and stops", "contradicts"),
        ("a ball slides from the top", "does not apply to slide"),
        ("a ball falls quickly", "needs a direction"),
        ("a ball falls red", "must come before a noun"),
        ("a red blue ball falls", "two colour words"),
        ("a ball falls in low gravity in high gravity", "contradictory"),
        ("a long ball falls", "only describe a pendulum"),
    ],
)
def test_invalid_prompts_say_why(prompt: str, fragment: str) -> None:
    with pytest.raises(PromptError, match=fragment):
        parse_prompt(prompt)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), motion=st.sampled_from(MOTIONS))
def test_every_generated_prompt_parses(seed: int, motion: str) -> None:
    prompt = _one_prompt(random.Random(seed), motion, ["red", "blue", "green", "yellow", "cyan"])
    assert parse_prompt(prompt).motion == motion


_PHRASES = sorted(" ".join(k) for k in VOCABULARY)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_PHRASES + ["xylophone"]), min_size=0, max_size=8))
def test_any_word_soup_parses_or_raises_prompt_error(words: list[str]) -> None:
    try:
        scene = parse_prompt(" ".join(words))
    except PromptError as exc:
        assert GRAMMAR in str(exc)
    else:
        assert scene.objects and scene.motion in MOTIONS
