"""The prompt grammar: plain phrasing of the scenes the renderer draws, read into exact physics.

A prompt is read word by word against `vocabulary.PHRASES` (longest phrase
first), so fillers ("the", "is", "on the ground"), prepositions and word order
are free, with a few rules that carry meaning:

- an object's adjectives come before its noun ("a red ball"), or after "that
  is" / "coloured" ("a ball that is red"); "a red and a blue ball" is two balls;
- "from" / "on" / "at" / "in" + a place is where something starts or is ("from
  the top right", "on the left"); "to" / "towards" + left or right, or a bare
  "left" / "right", is where it moves;
- for `hits` the first object named moves, unless the sentence is passive ("a
  blue ball is hit by a red ball"); "rolls into" is a hit; "each other" makes
  two objects collide, "a stationary ball" makes a collision a hit;
- a rope, string or rod hangs a pendulum ("a ball on a long string swings").

Every word must be known: a teacher that silently ignored words would teach
the student the wrong thing. An unknown word raises `PromptError` naming the
first word that cannot be placed, the nearest known words and a prompt that
parses; words that cannot apply to the motion (friction on a pendulum, "twice"
without "bounces") are errors too. `python -m afd_async.physics [--words |
PROMPT ...]` prints the grammar, every known word, or what each prompt means.
"""

from __future__ import annotations

import difflib
import re
from typing import Optional, Sequence

from afd_async.physics.prompt_error import DEFAULT_EXAMPLE, PromptError
from afd_async.physics.reading import Reading
from afd_async.physics.scene import PALETTE, Scene
from afd_async.physics.vocabulary import (
    EXAMPLES,
    KNOWN_WORDS,
    MAX_PHRASE_WORDS,
    PHRASES,
    Word,
)

GRAMMAR = """\
Prompt grammar (case and punctuation ignored; words in any natural order; fillers such as a, the, is,
then, it, on the ground, back and forth, because of friction may appear anywhere):
  object    := [count] [size] [mass] [colour] [length] noun      "a red ball", "two small blocks"
  noun      : ball, sphere | square, cube, block, box, brick (drawn as a flat square) | pendulum
              a ball/bob on a rope, string, rod, cord or chain is a pendulum ("a ball on a long string")
  count     : one, two, 2, a pair of                  size: small, tiny, little | medium | large, big, huge
  mass      : light, heavy (matters in collisions)    length: short, long (the pendulum's rope)
  colour    : red, blue, green, yellow, purple (violet), orange, cyan (turquoise), white; two objects:
              distinct colours. Also "a ball that is red", "a red and a blue ball".
  motion    : falls, drops, lands, is dropped      one object falls to the ground and rests
              bounces [twice], rebounds            ... falls and rebounds that often (no count: settles)
              is thrown up, is tossed, flies up    one object thrown up from the ground, falls back
              slides, rolls, glides, moves, is pushed   one object moves along the ground under friction
              collide, crash, bump into each other two objects move toward each other and collide
              hits, strikes, knocks, rolls into, is hit by   the first object (passive: the one after
                                                   "by") runs into the second, which is at rest
              swings, sways, oscillates, is released   a pendulum swings from its pivot
  bounces   : once, twice, three times, 3 times, with two bounces (up to 5), a few times (until it settles)
  place     : from/at/on/in the top | top left | top right | upper left | left | right | center | middle |
              above | high up     ("on the left": where an object is; two colliding objects may each have one)
  direction : left, right, to the left, towards the right, leftward(s), rightward(s)
  speed     : slowly, gently, slightly | quickly, fast, hard   (a swing: its width: widely, in a wide arc,
              with a small amplitude; a throw: how high: high)
  physics   : low/weak/high/strong gravity, on the moon | on ice, icy, slippery, without friction,
              on rough ground, a rough floor, a lot of friction | bouncy, rubber | soft
  other     : stops, comes to rest, head-on, without bouncing, slows down
Examples: "a blue ball drops from the top right and bounces twice on the ground", "a red cube slides to
the left and slows down because of friction", "two balls collide head-on", "a blue ball is hit by a red
ball", "a pendulum on a long rope swings widely", "a ball is thrown up and falls down"
"""
def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers; "doesn't" is "does not", other punctuation and hyphens separate words."""
    text = re.sub(r"n['\u2019]t\b", " not", text.lower())
    text = re.sub(r"['\u2019]s\b", "", text)
    return re.sub(r"[^a-z0-9]+", " ", text).split()


def _lex(words: list[str]) -> list[tuple[str, Optional[Word]]]:
    """Longest known phrase at each position; an unknown word comes back as `(word, None)`."""
    out: list[tuple[str, Optional[Word]]] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            key = tuple(words[i: i + n])
            if key in PHRASES:
                out.append((" ".join(key), PHRASES[key]))
                i += n
                break
        else:
            out.append((words[i], None))
            i += 1
    return out


def nearest_words(word: str, n: int = 3) -> list[str]:
    """Other known words spelled most like `word` (difflib ratio >= 0.6), best first."""
    return difflib.get_close_matches(word, sorted(KNOWN_WORDS - {word}), n=n, cutoff=0.6)


def parse_prompt(text: str) -> Scene:
    """Parse a prompt into a `Scene`.

    Args:
        text: a prompt in the grammar documented by `GRAMMAR`.

    Returns:
        The scene, with default colours filled in (red, then blue, ... skipping
        colours the prompt names) so the evaluator always knows what to look for.

    Raises:
        PromptError: an unknown word, a missing or second motion, the wrong
            number of objects, a word that does not apply to the motion, or
            contradictory words; the message names the word.
    """
    tokens = _lex(tokenize(text))
    motions = {str(w.value) for _, w in tokens if w is not None and w.slot == "motion"}
    example = EXAMPLES.get(next(iter(sorted(motions - {"bounce", "release"})), "fall"), DEFAULT_EXAMPLE)
    if not tokens:
        raise PromptError("empty prompt", text, example=example)
    for phrase, word in tokens:
        if word is None:
            within = sorted(" ".join(k) for k in PHRASES if len(k) > 1 and phrase in k)
            problem = (f"unknown word {phrase!r}" if not within else
                       f"{phrase!r} is known only in {', '.join(repr(p) for p in within[:4])}")
            raise PromptError(problem, text, word=phrase, suggestions=nearest_words(phrase), example=example)
        if word.slot == "bad_colour":
            raise PromptError(f"{phrase!r} is not a colour the renderer draws (colours: {', '.join(PALETTE)})",
                              text, example=example)
        if word.slot == "bad_place":
            raise PromptError(f"{phrase!r} is not a place the renderer starts an object (places: the top, top left, "
                              "top right, left, right, center)", text, example=example)
        if word.slot == "negation":
            raise PromptError(f"{phrase!r}: a clip shows what happens; say it without negation", text,
                              example=example)
    return Reading(text, example).read(tokens)  # type: ignore[arg-type]


def _describe(scene: Scene) -> str:
    objs = "; ".join(f"{o.size} {o.mass} {o.colour} {o.kind}" for o in scene.objects)
    return f"{scene.motion}: {objs} | {scene.canonical().split('|', 2)[2]}"


def words_by_slot() -> dict[str, list[str]]:
    """Every known phrase, grouped by the slot it fills (fillers included), for `--words`."""
    slots: dict[str, list[str]] = {}
    for key, word in PHRASES.items():
        slots.setdefault(word.slot, []).append(" ".join(key))
    return {slot: sorted(phrases) for slot, phrases in sorted(slots.items())}


def main(argv: Sequence[str] = ()) -> int:
    """`python -m afd_async.physics [--words | PROMPT ...]`: the grammar, every word, or each prompt's scene.

    Returns 1 when a prompt does not parse, else 0.
    """
    if not argv:
        print(GRAMMAR + "Every known word and phrase: python -m afd_async.physics --words")
        return 0
    if list(argv) == ["--words"]:
        for slot, phrases in words_by_slot().items():
            print(f"{slot}: {', '.join(phrases)}")
        return 0
    status = 0
    for prompt in argv:
        try:
            print(f"{prompt!r} -> {_describe(parse_prompt(prompt))}")
        except PromptError as e:
            print(f"{prompt!r} -> error: {e}")
            status = 1
    return status


