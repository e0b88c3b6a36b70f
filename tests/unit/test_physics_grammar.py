"""The prompt grammar: plain phrasings parse to the right scenes, everything else is a clear error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afd_async.physics import GRAMMAR, PromptError, parse_prompt, simulate
from afd_async.physics.grammar import main, nearest_words
from afd_async.physics.suite import MOTIONS, _one_prompt
from afd_async.physics.vocabulary import EXAMPLES, PHRASES

HELP = "(all words: python -m afd_async.physics --words)"


def _meaning(prompt: str) -> str:
    return parse_prompt(prompt).canonical()


@pytest.mark.parametrize(("prompt", "canonical"), [
    # issue 17: each of these was an 'unknown word' error before
    ("a blue ball drops from the top right and bounces twice on the ground",
     "fall|medium/normal/blue/ball|start=top right|dir=None|speed=normal|bounces=2|stops=False|g=normal|mu=normal"
     "|e=normal|len=normal"),
    ("a pendulum on a long rope swings widely",
     "swing|medium/normal/red/pendulum|start=None|dir=None|speed=fast|bounces=None|stops=False|g=normal|mu=normal"
     "|e=normal|len=long"),
    ("a ball is thrown up and falls down",
     "throw|medium/normal/red/ball|start=None|dir=None|speed=normal|bounces=0|stops=False|g=normal|mu=normal"
     "|e=normal|len=normal"),
    ("a red cube slides to the left and slows down because of friction",  # a cube is drawn as a square
     "slide|medium/normal/red/square|start=None|dir=left|speed=normal|bounces=None|stops=False|g=normal|mu=normal"
     "|e=normal|len=normal"),
])
def test_issue_examples_parse_to_the_intended_scene(prompt: str, canonical: str) -> None:
    assert _meaning(prompt) == canonical


def test_every_example_shown_in_errors_parses_to_its_motion() -> None:
    for motion, example in EXAMPLES.items():
        assert parse_prompt(example).motion == motion


def test_old_examples_keep_their_meaning() -> None:
    s = parse_prompt("a red ball falls from the top and bounces twice")
    assert (s.motion, s.bounces, s.start, s.objects[0].colour, s.objects[0].kind) == ("fall", 2, "top", "red", "ball")
    s = parse_prompt("a blue square slides left and stops")
    assert (s.motion, s.direction, s.stops, s.objects[0].kind) == ("slide", "left", True, "square")
    s = parse_prompt("two balls collide head-on")
    assert s.motion == "collide" and [o.colour for o in s.objects] == ["red", "blue"]
    s = parse_prompt("a large heavy green ball hits a small light blue square quickly on rough ground")
    assert (s.motion, s.speed, s.friction) == ("hit", "fast", "rough")
    assert [(o.size, o.mass, o.colour, o.kind) for o in s.objects] == [
        ("large", "heavy", "green", "ball"), ("small", "light", "blue", "square")]
    assert parse_prompt("a soft ball bounces").bounces is None  # no count: natural settling
    assert parse_prompt("a ball falls").bounces == 0


@pytest.mark.parametrize(("a", "b"), [
    ("a red ball falls from the top and bounces twice", "A RED ball, from the top, falls -- then bounces twice!"),
    ("a red ball falls from the top and bounces twice", "from the top, a red ball drops and bounces 2 times"),
    ("a blue cube falls", "a blue block drops"),
    ("a blue cube falls", "a box that is blue falls to the floor"),
    ("a ball rolls to the right on rough ground", "on a rough floor, a ball rolls to the right"),
    ("a pendulum swings in low gravity", "a ball on a string swings back and forth in weak gravity"),
    ("a red ball hits a blue ball", "a blue ball is hit by a red ball"),
    ("a red ball hits a blue ball", "a ball that is red hits a ball coloured blue"),
    ("a red ball hits a blue ball", "a red ball rolls into a stationary blue ball"),
    ("a red ball and a blue ball collide", "a red and a blue ball crash into each other"),
    ("a red ball and a blue ball collide", "a blue ball on the right and a red ball on the left collide"),
    ("a green ball bounces three times", "with three bounces, a green ball falls"),
])
def test_synonyms_passives_and_word_order_mean_the_same_scene(a: str, b: str) -> None:
    assert _meaning(a) == _meaning(b)


def test_a_thrown_ball_rises_from_the_ground_and_falls_back() -> None:
    gt = simulate(parse_prompt("a ball is thrown up and falls down"), seed=0, seconds=2.0)
    y = gt.positions[0, :, 1]  # y grows downward
    top = int(y.argmin())
    assert y[0] - y[top] > 0.3 and 0 < top < len(y) - 1 and y[-1] == pytest.approx(y[0])
    assert [e.kind for e in gt.events] == ["rest"]


# The exact one-line messages a user sees (afd run prefixes them with the file and line).
@pytest.mark.parametrize(("prompt", "message"), [
    ("a glorp ball bounces",
     "'a glorp ball bounces': unknown word 'glorp'; nearest known words: 'lower', 'floor'; a prompt that parses: "
     f"'{EXAMPLES['fall']}' {HELP}"),
    ("a purpel pendulum swings",
     "'a purpel pendulum swings': unknown word 'purpel'; nearest known words: 'purple', 'picture', 'rope'; "
     f"a prompt that parses: '{EXAMPLES['swing']}' {HELP}"),
    ("a ball falls from the bottom",
     "'a ball falls from the bottom': 'bottom' is not a place the renderer starts an object (places: the top, top "
     f"left, top right, left, right, center); a prompt that parses: '{EXAMPLES['fall']}' {HELP}"),
    ("a ball rolls down a slope",
     "'a ball rolls down a slope': unknown word 'slope'; nearest known words: 'stopped', 'stop', 'some'; a prompt "
     f"that parses: '{EXAMPLES['slide']}' {HELP}"),
    ("a pendulum swings on ice",
     f"'a pendulum swings on ice': 'on ice' does not apply to a swing; a prompt that parses: '{EXAMPLES['swing']}' "
     f"{HELP}"),
    ("a pink ball falls",
     "'a pink ball falls': 'pink' is not a colour the renderer draws (colours: red, blue, green, yellow, purple, "
     f"orange, cyan, white); a prompt that parses: '{EXAMPLES['fall']}' {HELP}"),
])
def test_error_messages_name_the_word_the_nearest_words_and_an_example(prompt: str, message: str) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt(prompt)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("", "empty prompt"),
        ("a red ball", "no motion word"),
        ("a ball falls and slides", r"more than one motion \('falls', 'slides'\)"),
        ("a ball falls twice", "'twice': a bounce count needs the word 'bounces'"),
        ("a ball bounces twice without bouncing", "'without bouncing' and 'bounces' contradict each other"),
        ("two balls fall", "a fall needs 1 object, the prompt names 2"),
        ("a ball collides", "a collision needs 2 objects, the prompt names 1"),
        ("two red balls collide", "distinct colours"),
        ("a ball swings", "only a pendulum swings"),
        ("a pendulum falls", "only a pendulum swings, and a pendulum only swings"),
        ("a square slides left on ice and stops", "'stops' contradicts 'on ice'"),
        ("a ball slides from the top", r"'from the top' does not apply to a slide \(it starts the center, the left"),
        ("a pendulum swings from the top", "'from the top' does not apply to a swing"),
        ("a ball is thrown up from the top right", "'from the top right' does not apply to a throw"),
        ("a ball falls quickly", "'quickly': a falling object's speed is its drift; it needs a direction"),
        ("a ball falls red", "'red' at the end describes no object: adjectives come before their noun"),
        ("a red falls ball", "'red' before 'falls' describes no object"),
        ("a red blue ball falls", "'red' and 'blue' both describe one object"),
        ("a ball falls in low gravity in high gravity", "'low gravity' and 'high gravity' contradict each other"),
        ("a long ball falls", "'long': short/long only describe a pendulum's rope"),
        ("a ball doesn't fall", "'not': a clip shows what happens; say it without negation"),
        ("a ball rolls to the top", "'to the top': objects move left or right"),
        ("a red ball on the left and a blue ball on the left collide", "colliding objects start on opposite sides"),
        ("a ball hits a ball from the left to the left", "the mover must move away from where it starts"),
    ],
)
def test_invalid_prompts_say_why(prompt: str, fragment: str) -> None:
    with pytest.raises(PromptError, match=fragment) as info:
        parse_prompt(prompt)
    assert "a prompt that parses" in str(info.value)


def test_nearest_words_and_the_grammar_text() -> None:
    assert nearest_words("purpel")[0] == "purple" and nearest_words("bounses")[0] == "bounces"
    assert nearest_words("xylophone") == []
    for word in ("cube", "block", "box", "rope", "string", "drops", "thrown up", "twice", "three times"):
        assert word in GRAMMAR


def test_cli_prints_the_grammar_or_each_scene(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0 and GRAMMAR in capsys.readouterr().out
    assert main(["--words"]) == 0
    words = capsys.readouterr().out
    assert "noun: ball, balls, block, blocks, box, boxes, brick, bricks, cube, cubes, pendulum" in words
    assert "part: bob, chain, cord, rod, rope, string, thread, wire" in words
    assert main(["a ball is thrown up", "a glorp ball"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("'a ball is thrown up' -> throw: medium normal red ball")
    assert out[1].startswith("'a glorp ball' -> error: 'a glorp ball': unknown word 'glorp'")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), motion=st.sampled_from(MOTIONS))
def test_every_generated_prompt_parses(seed: int, motion: str) -> None:
    prompt = _one_prompt(random.Random(seed), motion, ["red", "blue", "green", "yellow", "cyan"])
    assert parse_prompt(prompt).motion == motion


_PHRASES = sorted(" ".join(k) for k in PHRASES)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PHRASES + ["xylophone", ",", "3"]), min_size=0, max_size=10))
def test_any_word_soup_parses_or_raises_prompt_error(words: list[str]) -> None:
    try:
        scene = parse_prompt(" ".join(words))
    except PromptError as exc:
        assert "a prompt that parses" in str(exc)
    else:
        assert scene.objects and scene.motion in (*MOTIONS, "throw")
        simulate(scene, seed=0, seconds=0.05)  # every scene the grammar returns can be simulated
