"""Reading a lexed prompt into a `Scene`: who is described, what happens, where, and what may apply.

`Reading.read` walks the phrases of `grammar._lex` once, left to right:
adjectives wait for their noun (or attach after "that is"), a preposition waits
for the place it introduces, motion words are collected and resolved at the
end (`resolve_motion`), and places become a start, a direction, or the order of
two objects. The checks after the walk are the ones the grammar always had
(`ALLOWED`, `STARTS_FOR`): a word that cannot apply to the motion is an error
naming that word, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from afd_async.physics.prompt_error import PromptError
from afd_async.physics.scene import PALETTE, ObjectSpec, Scene
from afd_async.physics.vocabulary import Word

ADJECTIVES = ("count", "size", "mass", "colour", "length")
SCENE_SLOTS = ("bounces", "direction", "speed", "gravity", "friction", "restitution", "stops", "head_on", "no_bounce")
# Which scene-level words make sense for which motion (the rest are PromptErrors).
ALLOWED: dict[str, set[str]] = {
    "fall": {"bounces", "start", "direction", "speed", "gravity", "friction", "restitution", "stops", "no_bounce"},
    "throw": {"bounces", "start", "direction", "speed", "gravity", "friction", "restitution", "stops", "no_bounce"},
    "slide": {"start", "direction", "speed", "gravity", "friction", "restitution", "stops"},
    "collide": {"speed", "gravity", "friction", "restitution", "stops", "head_on"},
    "hit": {"start", "direction", "speed", "gravity", "friction", "restitution", "stops", "head_on"},
    "swing": {"start", "speed", "gravity"},
}
STARTS_FOR = {
    "fall": {"top", "top left", "top right", "left", "right", "center"},
    "throw": {"left", "right", "center"},
    "slide": {"left", "right", "center"},
    "hit": {"left", "right"},
    "swing": {"left", "right"},
}
NOUN_WORDS = "ball, square, cube, block, box, pendulum"
_OPPOSITE = {"left": "right", "right": "left"}


@dataclass(eq=False)
class _Object:
    kind: str
    attrs: dict[str, tuple[object, str]] = field(default_factory=dict)  # slot -> (value, phrase as written)
    place: Optional[tuple[str, str]] = None  # ("left", "on the left"): where the prompt puts it


@dataclass
class _Place:
    value: str
    prep: Optional[str]  # "from", "at", "to" or None (a bare "left")
    owner: Optional[_Object]  # the object named last before the place
    phrase: str


class Reading:
    """One prompt being read; `read` returns its scene or raises `PromptError`."""

    def __init__(self, text: str, example: str) -> None:
        self.text, self.example = text, example
        self.objects: list[_Object] = []
        self.groups: list[dict[str, tuple[object, str]]] = []  # adjectives of an elided noun ("a red and a blue ball")
        self.pending: dict[str, tuple[object, str]] = {}
        self.last_noun: list[_Object] = []
        self.scene: dict[str, tuple[object, str]] = {}
        self.motions: list[tuple[str, str]] = []
        self.places: list[_Place] = []
        self.prep: Optional[tuple[str, str]] = None
        self.and_seen = self.predicative = self.each_other = self.at_rest = self.into = self.into_object = False
        self.agent: Optional[int] = None

    def error(self, problem: str) -> PromptError:
        return PromptError(problem, self.text, example=self.example)

    # ---------------------------------------------------------------------------------- the walk
    def read(self, tokens: list[tuple[str, Word]]) -> Scene:
        for phrase, word in tokens:
            self.step(phrase, word)
        self.flush(None)
        motion = self.resolve_motion()
        return self.build(motion)

    def step(self, phrase: str, word: Word) -> None:
        slot = word.slot
        if slot == "filler":
            self.and_seen |= phrase == "and"
            self.predicative &= phrase not in ("a", "an", "another")  # an article starts the next object
            if self.prep is not None:  # "from the": kept to quote the place as written
                self.prep = (self.prep[0], f"{self.prep[1]} {phrase}")
            return
        if slot == "prep":
            self.prep = (str(word.value), phrase)
            return
        if slot == "position":
            prep = self.prep[0] if self.prep else None
            written = f"{self.prep[1]} {phrase}" if self.prep else phrase
            self.places.append(_Place(str(word.value), prep, self.objects[-1] if self.objects else None, written))
            self.prep = None
            return
        self.prep = None
        if slot in ADJECTIVES:
            self.adjective(slot, word.value, phrase)
        elif slot == "noun":
            self.noun(str(word.value), phrase)
        elif slot == "part":
            self.part(str(word.value), phrase)
        elif slot == "motion":
            self.motion(str(word.value), phrase)
        elif slot == "predicative":
            self.predicative = True
        elif slot == "each_other":
            self.each_other = True
        elif slot == "at_rest":
            self.at_rest = True
        elif slot == "agent":
            self.agent = len(self.objects)
        elif slot == "into":
            self.into = True
        else:  # a scene-level word, allowed among adjectives ("a small bouncy ball"): direction, speed, ...
            self.set_scene(slot, word.value, phrase)

    def set_scene(self, slot: str, value: object, phrase: str) -> None:
        if slot in self.scene and self.scene[slot][0] != value:
            raise self.error(f"{self.scene[slot][1]!r} and {phrase!r} contradict each other")
        self.scene[slot] = (value, phrase)

    def adjective(self, slot: str, value: object, phrase: str) -> None:
        if slot == "count" and phrase == "one" and self.pending and "count" not in self.pending:
            self.noun(self.objects[-1].kind if self.objects else "ball", phrase)  # "a blue one"
            return
        if self.predicative and self.objects and not self.pending:
            self.attach(self.objects[-1], {slot: (value, phrase)})  # "a ball that is red"
            return
        if slot in self.pending:
            if not self.and_seen:
                raise self.error(f"{self.pending[slot][1]!r} and {phrase!r} both describe one object")
            self.groups.append(self.pending)  # "a red and a blue ball": the first noun is left out
            self.pending = {}
        self.pending[slot] = (value, phrase)
        self.and_seen = False

    def noun(self, kind: str, phrase: str) -> None:
        made: list[_Object] = []
        for adjectives in [*self.groups, self.pending]:
            adjectives = dict(adjectives)
            count = int(adjectives.pop("count", (1, ""))[0])  # type: ignore[call-overload]
            made.extend(_Object(kind, dict(adjectives)) for _ in range(count))
        self.objects.extend(made)
        self.last_noun = made
        self.groups, self.pending = [], {}
        self.predicative = self.and_seen = False
        self.into_object |= self.into
        self.into = False

    def part(self, part: str, phrase: str) -> None:
        """A rope/string/rod or a bob: the object named last (or a new one) is a pendulum; adjectives go to it."""
        if int(self.pending.get("count", (1, ""))[0]) != 1 or self.groups:  # type: ignore[call-overload]
            raise self.error(f"one pendulum has one {phrase!r}")
        self.pending.pop("count", None)
        if not self.objects or (part == "bob" and self.objects[-1].kind != "pendulum"):
            self.objects.append(_Object("pendulum"))
        target = self.objects[-1]
        target.kind = "pendulum"
        self.attach(target, self.pending)
        self.pending = {}

    def attach(self, obj: _Object, adjectives: dict[str, tuple[object, str]]) -> None:
        for slot, (value, phrase) in adjectives.items():
            if slot == "count":
                raise self.error(f"{phrase!r} must come before its noun ('{phrase} balls')")
            if slot in obj.attrs and obj.attrs[slot][0] != value:
                raise self.error(f"{obj.attrs[slot][1]!r} and {phrase!r} both describe one object")
            obj.attrs[slot] = (value, phrase)

    def motion(self, kind: str, phrase: str) -> None:
        if kind == "bounce" and set(self.pending) == {"count"} and not self.groups:
            self.set_scene("bounces", self.pending.pop("count")[0], f"{phrase} (a count)")  # "two bounces"
        self.flush(phrase)
        self.motions.append((kind, phrase))
        self.into = self.predicative = False

    def flush(self, before: Optional[str]) -> None:
        """Adjectives still waiting for a noun when something else comes: apposition, or an error naming them."""
        if not self.pending and not self.groups:
            return
        groups = [*self.groups, self.pending] if self.pending else self.groups
        counts_ok = all(int(g.get("count", (1, ""))[0]) == 1 for g in groups)  # type: ignore[call-overload]
        if counts_ok and len(self.last_noun) == len(groups) > 1:  # "two balls, one red and one blue"
            for obj, adjectives in zip(self.last_noun, groups):
                self.attach(obj, {s: v for s, v in adjectives.items() if s != "count"})
            self.groups, self.pending = [], {}
            return
        words = " ".join(p for g in groups for _, p in g.values())
        where = f" before {before!r}" if before else " at the end"
        raise self.error(f"{words!r}{where} describes no object: adjectives come before their noun "
                         f"({NOUN_WORDS}), as in 'a {words} ball'")

    # ---------------------------------------------------------------------------------- the meaning
    def resolve_motion(self) -> str:
        kinds = {k for k, _ in self.motions}
        if "release" in kinds:  # "is released": a pendulum swings, anything else falls
            kinds.discard("release")
            kinds.add("swing" if any(o.kind == "pendulum" for o in self.objects) else "fall")
        if not kinds:
            raise self.error("no motion word (falls, bounces, is thrown up, slides, collide, hits, swings)")
        if self.each_other and kinds <= {"collide", "hit", "slide", "bounce"}:
            return "collide"
        if "collide" in kinds and kinds <= {"collide", "hit", "slide", "bounce"}:
            return "hit" if self.at_rest and len(self.objects) == 2 else "collide"
        if "hit" in kinds and kinds <= {"hit", "slide"}:
            return "hit"
        if kinds == {"slide"} and self.into_object and len(self.objects) == 2:
            return "hit"  # "rolls quickly into a cyan ball"
        if "throw" in kinds and kinds <= {"throw", "fall", "bounce"}:
            return "throw"
        if kinds <= {"fall", "bounce"}:
            return "fall"
        if len(kinds) > 1:
            written = ", ".join(repr(p) for _, p in self.motions)
            raise self.error(f"more than one motion ({written}); a clip shows one: fall (and bounce), be thrown "
                             "up, slide, collide, hit or swing")
        return kinds.pop()

    def build(self, motion: str) -> Scene:
        if motion == "hit" and self.agent == 1 and len(self.objects) == 2:
            self.objects.reverse()  # "a blue ball is hit by a red ball": the red ball moves
        self.check_objects(motion)
        self.read_places(motion)
        for slot, (_, phrase) in self.scene.items():
            if slot not in ALLOWED[motion]:
                raise self.error(f"{phrase!r} does not apply to {_MOTION_NOUN[motion]}")
        self.check_rules(motion)
        start = self.scene.get("start", (None, ""))[0]
        if start is not None and start not in STARTS_FOR[motion]:
            raise self.error(f"{self.scene['start'][1]!r} does not apply to {_MOTION_NOUN[motion]} "
                             f"(it starts {', '.join('the ' + s for s in sorted(STARTS_FOR[motion]))})")
        value = {slot: v for slot, (v, _) in self.scene.items()}
        return Scene(
            text=self.text,
            motion=motion,  # type: ignore[arg-type]
            objects=self.object_specs(),
            start=start,  # type: ignore[arg-type]
            direction=value.get("direction"),  # type: ignore[arg-type]
            speed=value.get("speed", "normal"),  # type: ignore[arg-type]
            bounces=self.bounces(motion),
            stops=bool(value.get("stops", False)),
            gravity=value.get("gravity", "normal"),  # type: ignore[arg-type]
            friction=value.get("friction", "normal"),  # type: ignore[arg-type]
            restitution=value.get("restitution", "normal"),  # type: ignore[arg-type]
            length=str(self.objects[0].attrs.get("length", ("normal", ""))[0]),  # type: ignore[arg-type]
        )

    def read_places(self, motion: str) -> None:
        """Places become the direction, the start, or (two colliding objects) which object starts on the left."""
        for place in self.places:
            if place.prep == "to" or (place.prep is None and place.value in _OPPOSITE):
                if place.value not in _OPPOSITE:
                    raise self.error(f"{place.phrase!r}: objects move left or right (to the left, to the right)")
                self.set_scene("direction", place.value, place.phrase)
            elif motion == "collide":
                if place.owner is None:
                    raise self.error(f"{place.phrase!r}: say which object is there ('a red ball on the left and "
                                     "a blue ball on the right collide')")
                if place.value != "center":  # "meet in the middle": where they always meet
                    place.owner.place = (place.value, place.phrase)
            elif motion == "hit" and place.prep == "at" and place.owner is not None and place.owner is not self.objects[0]:
                if place.value not in _OPPOSITE:
                    raise self.error(f"{place.phrase!r}: the object that is hit waits on the left or the right")
                self.set_scene("start", _OPPOSITE[place.value], place.phrase)  # the target on the right: mover left
            else:
                self.set_scene("start", place.value, place.phrase)
        if motion == "collide":
            sides = [o.place for o in self.objects]
            named = [s for s in sides if s is not None]
            if len(named) == 2 and named[0][0] == named[1][0]:
                raise self.error(f"{named[0][1]!r} and {named[1][1]!r}: colliding objects start on opposite sides")
            if (sides[0] is not None and sides[0][0] == "right") or (sides[1] is not None and sides[1][0] == "left"):
                self.objects.reverse()  # the renderer starts the first object on the left

    def check_objects(self, motion: str) -> None:
        wanted = 2 if motion in ("collide", "hit") else 1
        if len(self.objects) != wanted:
            raise self.error(f"{_MOTION_NOUN[motion]} needs {wanted} object{'s' if wanted > 1 else ''}, "
                             f"the prompt names {len(self.objects)}")
        is_pendulum = [o.kind == "pendulum" for o in self.objects]
        if (motion == "swing") != all(is_pendulum) or (motion != "swing" and any(is_pendulum)):
            raise self.error("only a pendulum swings, and a pendulum only swings (a ball on a string is a pendulum)")
        for o in self.objects:
            if o.kind != "pendulum" and "length" in o.attrs:
                raise self.error(f"{o.attrs['length'][1]!r}: short/long only describe a pendulum's rope")
        named = [str(o.attrs["colour"][0]) for o in self.objects if "colour" in o.attrs]
        if len(named) != len(set(named)):
            raise self.error("two objects of one colour cannot be told apart; name distinct colours")

    def check_rules(self, motion: str) -> None:
        bounce_words = [p for k, p in self.motions if k == "bounce"]
        if "bounces" in self.scene and not bounce_words:
            raise self.error(f"{self.scene['bounces'][1]!r}: a bounce count needs the word 'bounces'")
        if "no_bounce" in self.scene and bounce_words:
            raise self.error(f"{self.scene['no_bounce'][1]!r} and {bounce_words[0]!r} contradict each other")
        if motion == "fall" and "speed" in self.scene and "direction" not in self.scene:
            raise self.error(f"{self.scene['speed'][1]!r}: a falling object's speed is its drift; it needs a "
                             "direction (to the left/right)")
        if "stops" in self.scene and self.scene.get("friction", (None,))[0] == "ice":
            raise self.error(f"{self.scene['stops'][1]!r} contradicts {self.scene['friction'][1]!r} (almost no friction)")
        start, direction = self.scene.get("start", (None,))[0], self.scene.get("direction", (None,))[0]
        if motion == "hit" and start is not None and start == direction:
            raise self.error("the mover must move away from where it starts")

    def bounces(self, motion: str) -> Optional[int]:
        if motion not in ("fall", "throw"):
            return None
        if any(k == "bounce" for k, _ in self.motions):
            count = self.scene.get("bounces", (None,))[0]
            return None if count is None else int(count)  # type: ignore[call-overload]
        return 0  # no "bounces": lands and rests

    def object_specs(self) -> tuple[ObjectSpec, ...]:
        named = [str(o.attrs["colour"][0]) for o in self.objects if "colour" in o.attrs]
        free = iter(c for c in PALETTE if c not in named)
        return tuple(
            ObjectSpec(
                kind=o.kind,  # type: ignore[arg-type]
                colour=str(o.attrs["colour"][0]) if "colour" in o.attrs else next(free),
                size=o.attrs.get("size", ("medium", ""))[0],  # type: ignore[arg-type]
                mass=o.attrs.get("mass", ("normal", ""))[0],  # type: ignore[arg-type]
            )
            for o in self.objects
        )


_MOTION_NOUN = {"fall": "a fall", "throw": "a throw", "slide": "a slide", "collide": "a collision", "hit": "a hit",
                "swing": "a swing"}
