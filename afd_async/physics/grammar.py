"""The prompt grammar: a small, closed vocabulary so every prompt has exact physics.

Prompts are bags of known words and phrases with two ordering rules: an
object's adjectives come before its noun, and for `hits` the first object named
is the one that moves. Every word must be known; an unknown word raises
`PromptError` naming it and listing `GRAMMAR`, because a teacher that silently
ignored words would teach the student the wrong thing. Words that cannot apply
to the motion (friction on a pendulum, "twice" without "bounces") are errors too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from afd_async.physics.scene import PALETTE, ObjectSpec, Scene

GRAMMAR = """\
Prompt grammar (case-insensitive; punctuation ignored; fillers: a, an, the, and, then, in, with):
  object    := [one | two] [size] [mass] [colour] [length] noun   (adjectives before the noun)
  noun      : ball(s), square(s), block(s), pendulum
  size      : small, medium, large, big            mass: light, heavy (matters in collisions)
  colour    : red, blue, green, yellow, purple, orange, cyan, white (two objects: distinct colours)
  length    : short, long                          (pendulum rod)
  motion    : falls | drops          one object drops onto the floor and rests
              bounces [count]        falls and rebounds count times, then rests (no count: settles)
              slides | rolls         one object moves along the floor under friction
              collide                two objects move toward each other and collide
              hits                   the first object runs into the second, which is at rest
              swings                 a pendulum swings from its pivot
  count     : once, twice, three times, four times  (only with bounces)
  start     : from the top | from the top left | from the top right | from the left |
              from the right | from the center | from the middle
  direction : left, right, to the left, to the right
  speed     : slowly, quickly, fast                 (a swing: its amplitude)
  physics   : low gravity, high gravity | on ice, on rough ground | bouncy, soft
  other     : and stops, head-on
Examples: "a red ball falls from the top and bounces twice", "a blue square slides left and
stops", "two balls collide head-on", "a heavy red ball hits a light blue ball", "a pendulum swings"
"""


class PromptError(ValueError):
    """A prompt outside the grammar; the message names the problem and lists `GRAMMAR`."""

    def __init__(self, problem: str, prompt: str) -> None:
        self.problem = problem
        self.prompt = prompt
        super().__init__(f"{problem} (prompt: {prompt!r})\n{GRAMMAR}")


@dataclass(frozen=True)
class _Word:
    slot: str
    value: object


def _vocabulary() -> dict[tuple[str, ...], _Word]:
    table: dict[str, tuple[str, object]] = {
        "one": ("count", 1), "two": ("count", 2),
        "small": ("size", "small"), "medium": ("size", "medium"),
        "large": ("size", "large"), "big": ("size", "large"),
        "light": ("mass", "light"), "heavy": ("mass", "heavy"),
        "short": ("length", "short"), "long": ("length", "long"),
        "ball": ("noun", "ball"), "balls": ("noun", "ball"),
        "square": ("noun", "square"), "squares": ("noun", "square"),
        "block": ("noun", "square"), "blocks": ("noun", "square"),
        "pendulum": ("noun", "pendulum"),
        "falls": ("motion", "fall"), "fall": ("motion", "fall"),
        "drops": ("motion", "fall"), "drop": ("motion", "fall"),
        "bounces": ("motion", "bounce"), "bounce": ("motion", "bounce"),
        "slides": ("motion", "slide"), "slide": ("motion", "slide"),
        "rolls": ("motion", "slide"), "roll": ("motion", "slide"),
        "collide": ("motion", "collide"), "collides": ("motion", "collide"),
        "hits": ("motion", "hit"), "swings": ("motion", "swing"), "swing": ("motion", "swing"),
        "once": ("bounces", 1), "twice": ("bounces", 2),
        "three times": ("bounces", 3), "four times": ("bounces", 4),
        "from the top": ("start", "top"), "from the top left": ("start", "top left"),
        "from the top right": ("start", "top right"), "from the left": ("start", "left"),
        "from the right": ("start", "right"), "from the center": ("start", "center"),
        "from the middle": ("start", "center"),
        "left": ("direction", "left"), "right": ("direction", "right"),
        "to the left": ("direction", "left"), "to the right": ("direction", "right"),
        "slowly": ("speed", "slow"), "quickly": ("speed", "fast"), "fast": ("speed", "fast"),
        "low gravity": ("gravity", "low"), "high gravity": ("gravity", "high"),
        "on ice": ("friction", "ice"), "on rough ground": ("friction", "rough"),
        "bouncy": ("restitution", "bouncy"), "soft": ("restitution", "soft"),
        "stops": ("stops", True), "stop": ("stops", True),
        "head-on": ("head_on", True), "head on": ("head_on", True),
        "a": ("filler", None), "an": ("filler", None), "the": ("filler", None),
        "and": ("filler", None), "then": ("filler", None), "in": ("filler", None),
        "with": ("filler", None),
    }
    for colour in PALETTE:
        table[colour] = ("colour", colour)
    return {tuple(k.split()): _Word(*v) for k, v in table.items()}


VOCABULARY = _vocabulary()
_MAX_PHRASE = max(len(k) for k in VOCABULARY)
_ADJECTIVES = ("count", "size", "mass", "colour", "length")
# Which scene-level words make sense for which motion (the rest are PromptErrors).
_ALLOWED: dict[str, set[str]] = {
    "fall": {"bounces", "start", "direction", "speed", "gravity", "friction", "restitution", "stops"},
    "slide": {"start", "direction", "speed", "gravity", "friction", "restitution", "stops"},
    "collide": {"speed", "gravity", "friction", "restitution", "stops", "head_on"},
    "hit": {"start", "direction", "speed", "gravity", "friction", "restitution", "stops", "head_on"},
    "swing": {"start", "speed", "gravity"},
}
_STARTS_FOR = {
    "fall": {"top", "top left", "top right", "left", "right", "center"},
    "slide": {"left", "right", "center"},
    "hit": {"left", "right"},
    "swing": {"left", "right"},
}
_PHRASE_FOR_SLOT = {"bounces": "a bounce count", "head_on": "head-on", "stops": "stops"}


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation other than the hyphen of "head-on" is dropped."""
    words = (w.strip("-") for w in re.sub(r"[^a-z\-\s]", " ", text.lower()).split())
    return [w for w in words if w]


def _lex(text: str) -> list[tuple[str, _Word]]:
    words = tokenize(text)
    if not words:
        raise PromptError("empty prompt", text)
    out: list[tuple[str, _Word]] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            if key in VOCABULARY:
                out.append((" ".join(key), VOCABULARY[key]))
                i += n
                break
        else:
            # Name the word where a known phrase stopped matching ("bottom" in "from the bottom").
            matched = max(
                (n for n in range(1, _MAX_PHRASE) for k in VOCABULARY
                 if len(k) > n and k[:n] == tuple(words[i : i + n])),
                default=0,
            )
            bad = words[i + matched] if i + matched < len(words) else words[i]
            raise PromptError(f"unknown word {bad!r}", text)
    return out


def parse_prompt(text: str) -> Scene:
    """Parse a prompt into a `Scene`.

    Args:
        text: a prompt in the grammar documented by `GRAMMAR`.

    Returns:
        The scene, with default colours filled in (red, then blue, ... skipping
        colours the prompt names) so the evaluator always knows what to look for.

    Raises:
        PromptError: unknown word, missing/duplicate motion, wrong object count,
            a word that does not apply to the motion, or contradictory words.
    """
    objects: list[dict[str, object]] = []
    pending: dict[str, object] = {}
    scene: dict[str, object] = {}
    motions: list[str] = []
    for phrase, word in _lex(text):
        if word.slot == "filler":
            continue
        if word.slot in _ADJECTIVES:
            if word.slot in pending:
                raise PromptError(f"two {word.slot} words for one object ({phrase!r})", text)
            pending[word.slot] = word.value
        elif word.slot == "noun":
            count = int(pending.pop("count", 1))  # type: ignore[call-overload]
            objects.extend({**pending, "kind": word.value} for _ in range(count))
            pending = {}
        elif word.slot == "motion":
            motions.append(str(word.value))
        else:
            if word.slot in scene and scene[word.slot] != word.value:
                raise PromptError(f"contradictory words for {word.slot} ({phrase!r})", text)
            scene[word.slot] = word.value
    if pending:
        words = ", ".join(str(v) for v in pending.values())
        raise PromptError(f"{words!r} must come before a noun (ball, square, block, pendulum)", text)
    motion = _resolve_motion(motions, scene, text)
    _check_applicable(motion, motions, scene, objects, text)
    specs = _object_specs(objects, motion, text)
    start = scene.get("start")
    if start is not None and motion in _STARTS_FOR and start not in _STARTS_FOR[motion]:
        raise PromptError(f"'from the {start}' does not apply to {motion}", text)
    return Scene(
        text=text,
        motion=motion,  # type: ignore[arg-type]
        objects=specs,
        start=start,  # type: ignore[arg-type]
        direction=scene.get("direction"),  # type: ignore[arg-type]
        speed=scene.get("speed", "normal"),  # type: ignore[arg-type]
        bounces=_bounces(motion, motions, scene),
        stops=bool(scene.get("stops", False)),
        gravity=scene.get("gravity", "normal"),  # type: ignore[arg-type]
        friction=scene.get("friction", "normal"),  # type: ignore[arg-type]
        restitution=scene.get("restitution", "normal"),  # type: ignore[arg-type]
        length=_length(objects),  # type: ignore[arg-type]
    )


def _resolve_motion(motions: list[str], scene: dict[str, object], text: str) -> str:
    kinds = set(motions)
    if not kinds:
        raise PromptError("no motion word (falls, bounces, slides, collide, hits, swings)", text)
    if kinds == {"fall", "bounce"}:  # "falls ... and bounces twice"
        return "fall"
    if len(kinds) > 1:
        raise PromptError(f"more than one motion ({', '.join(sorted(kinds))})", text)
    return "fall" if kinds == {"bounce"} else motions[0]


def _bounces(motion: str, motions: list[str], scene: dict[str, object]) -> int | None:
    if motion != "fall":
        return None
    if "bounce" in motions:
        count = scene.get("bounces")
        return None if count is None else int(count)  # type: ignore[call-overload]
    return 0  # falls without "bounces": lands and rests (other motions: unused)


def _check_applicable(
    motion: str, motions: list[str], scene: dict[str, object], objects: list[dict[str, object]], text: str
) -> None:
    for slot in scene:
        if slot not in _ALLOWED[motion]:
            what = _PHRASE_FOR_SLOT.get(slot, f"{slot} word {scene[slot]!r}")
            raise PromptError(f"{what} does not apply to {motion}", text)
    if "bounces" in scene and "bounce" not in motions:
        raise PromptError("a bounce count (once, twice, ...) needs the word 'bounces'", text)
    if motion == "fall" and "speed" in scene and "direction" not in scene:
        raise PromptError("a falling object's speed needs a direction (left/right)", text)
    if scene.get("stops") and scene.get("friction") == "ice":
        raise PromptError("'stops' contradicts 'on ice' (almost no friction)", text)
    if motion == "hit" and "start" in scene and "direction" in scene and scene["start"] == scene["direction"]:
        raise PromptError("the mover must move away from where it starts", text)
    if motion != "swing" and any(o.get("length") for o in objects):
        raise PromptError("short/long only describe a pendulum", text)


def _object_specs(objects: list[dict[str, object]], motion: str, text: str) -> tuple[ObjectSpec, ...]:
    wanted = 2 if motion in ("collide", "hit") else 1
    if len(objects) != wanted:
        raise PromptError(f"{motion} needs {wanted} object(s), the prompt names {len(objects)}", text)
    is_pendulum = [o["kind"] == "pendulum" for o in objects]
    if (motion == "swing") != all(is_pendulum) or (motion != "swing" and any(is_pendulum)):
        raise PromptError("only a pendulum swings, and a pendulum only swings", text)
    named = [o["colour"] for o in objects if "colour" in o]
    if len(named) != len(set(named)):
        raise PromptError("two objects of one colour cannot be told apart; name distinct colours", text)
    free = iter(c for c in PALETTE if c not in named)
    return tuple(
        ObjectSpec(
            kind=o["kind"],  # type: ignore[arg-type]
            colour=str(o["colour"]) if "colour" in o else next(free),
            size=o.get("size", "medium"),  # type: ignore[arg-type]
            mass=o.get("mass", "normal"),  # type: ignore[arg-type]
        )
        for o in objects
    )


def _length(objects: list[dict[str, object]]) -> str:
    return str(objects[0].get("length", "normal")) if objects else "normal"
