"""The words of the prompt grammar: every phrase the parser knows, and what it means.

One table, `PHRASES`, maps a phrase (one or more words, as `grammar.tokenize`
writes them) to a `Word`: the slot it fills and its value. The parser
(`afd_async.physics.grammar`) matches the longest phrase at each position, so
"on ice" is a friction word while "on" alone is a preposition, and "high up" a
place while "high" alone is a speed. Synonyms map to what the renderer draws:
cube, block and box are its `square` (drawn flat), rope, string and rod the
pendulum's rod, ground and floor the one ground it always draws.

Slots: `filler` (no meaning), `count`, `size`, `mass`, `colour`, `length`
(object adjectives), `noun`, `part` (rod or bob of a pendulum), `motion`,
`bounces`, `prep` (`from`: where something starts or is; `to`: where it goes),
`position`, `direction`, `speed`, `gravity`, `friction`, `restitution`,
`stops`, `head_on`, `no_bounce`, `each_other` (two objects move toward each
other: a collision), `at_rest` (the object named is at rest: it is hit),
`agent` ("by": the next object named does the hitting), `into` ("rolls quickly
into a ball": a hit), `predicative` ("that is", "coloured": adjectives after
their noun), `negation`, `bad_colour` (a colour the renderer does not draw), `bad_place` (a
place it never starts an object).
A `bounces` value of None ("a few times") is bouncing until it settles.
"""

from __future__ import annotations

from dataclasses import dataclass

from afd_async.physics.scene import PALETTE


@dataclass(frozen=True)
class Word:
    """What a phrase means: the slot it fills and the value it puts there."""

    slot: str
    value: object


NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
MAX_BOUNCES = 5
UNDRAWN_PLACES = ("bottom", "bottom left", "bottom right", "lower left", "lower right", "below", "underneath")
UNDRAWN_COLOURS = ("pink", "black", "grey", "gray", "brown", "magenta", "gold", "silver", "indigo", "beige")

_FILLERS = """
a an the another and then in with it its itself is are was were be being been gets get got getting
of onto over along across through around off this there some someone somebody we you see sees shows
showing video clip scene screen frame picture image view very really quite just also so as while when after
afterwards before until till finally eventually gradually again down up back forth away together side sides
corner edge part way ground floor surface air both them they their each other
friction gravity hanging hangs hung suspended attached tied starts start starting begins beginning
drifting drifts drift meet meets meeting keeps keep continues continue repeatedly slows slowing
decelerates now first sized hand between against upon under upward upwards downward downwards does do did
""".split()

_PHRASES: dict[str, tuple[str, object]] = {
    # --- fillers that are phrases
    "back and forth": ("filler", None), "to and fro": ("filler", None), "up and down": ("filler", None),
    "slows down": ("filler", None), "slow down": ("filler", None), "slowing down": ("filler", None),
    "loses speed": ("filler", None), "because of friction": ("filler", None), "due to friction": ("filler", None),
    "because of gravity": ("filler", None), "due to gravity": ("filler", None), "under gravity": ("filler", None),
    "meet in the middle": ("filler", None), "meets in the middle": ("filler", None),
    "straight up": ("filler", None), "straight down": ("filler", None), "its way": ("filler", None),
    "straight": ("filler", None), "right away": ("filler", None), "right now": ("filler", None),
    # --- objects
    "a pair of": ("count", 2), "pair of": ("count", 2),
    "small": ("size", "small"), "tiny": ("size", "small"), "little": ("size", "small"),
    "medium": ("size", "medium"), "large": ("size", "large"), "big": ("size", "large"),
    "huge": ("size", "large"), "giant": ("size", "large"),
    "light": ("mass", "light"), "lightweight": ("mass", "light"), "heavy": ("mass", "heavy"),
    "short": ("length", "short"), "long": ("length", "long"),
    "ball": ("noun", "ball"), "balls": ("noun", "ball"), "sphere": ("noun", "ball"), "spheres": ("noun", "ball"),
    "square": ("noun", "square"), "squares": ("noun", "square"), "cube": ("noun", "square"),
    "cubes": ("noun", "square"), "block": ("noun", "square"), "blocks": ("noun", "square"),
    "box": ("noun", "square"), "boxes": ("noun", "square"), "brick": ("noun", "square"),
    "bricks": ("noun", "square"),
    "pendulum": ("noun", "pendulum"), "pendulums": ("noun", "pendulum"),
    "rope": ("part", "rod"), "string": ("part", "rod"), "rod": ("part", "rod"), "cord": ("part", "rod"),
    "chain": ("part", "rod"), "wire": ("part", "rod"), "thread": ("part", "rod"), "bob": ("part", "bob"),
    "violet": ("colour", "purple"), "turquoise": ("colour", "cyan"), "aqua": ("colour", "cyan"),
    "that": ("predicative", True), "which": ("predicative", True), "coloured": ("predicative", True),
    "colored": ("predicative", True), "painted": ("predicative", True),
    # --- motions
    "falls": ("motion", "fall"), "fall": ("motion", "fall"), "falling": ("motion", "fall"),
    "fell": ("motion", "fall"), "drops": ("motion", "fall"), "drop": ("motion", "fall"),
    "dropping": ("motion", "fall"), "dropped": ("motion", "fall"), "lands": ("motion", "fall"),
    "land": ("motion", "fall"), "landing": ("motion", "fall"), "plummets": ("motion", "fall"),
    "comes down": ("motion", "fall"), "come down": ("motion", "fall"), "comes back down": ("motion", "fall"),
    "coming down": ("motion", "fall"),
    "bounces": ("motion", "bounce"), "bounce": ("motion", "bounce"), "bouncing": ("motion", "bounce"),
    "bounced": ("motion", "bounce"), "rebounds": ("motion", "bounce"), "rebound": ("motion", "bounce"),
    "slides": ("motion", "slide"), "slide": ("motion", "slide"), "sliding": ("motion", "slide"),
    "slid": ("motion", "slide"), "rolls": ("motion", "slide"), "roll": ("motion", "slide"),
    "rolling": ("motion", "slide"), "rolled": ("motion", "slide"), "glides": ("motion", "slide"),
    "glide": ("motion", "slide"), "gliding": ("motion", "slide"), "skids": ("motion", "slide"),
    "skid": ("motion", "slide"), "moves": ("motion", "slide"), "move": ("motion", "slide"),
    "moving": ("motion", "slide"), "travels": ("motion", "slide"), "goes": ("motion", "slide"),
    "pushed": ("motion", "slide"), "pushes": ("motion", "slide"), "push": ("motion", "slide"),
    "shoved": ("motion", "slide"),
    "collide": ("motion", "collide"), "collides": ("motion", "collide"), "colliding": ("motion", "collide"),
    "collided": ("motion", "collide"), "collision": ("motion", "collide"), "crash": ("motion", "collide"),
    "crashes": ("motion", "collide"), "crashing": ("motion", "collide"),
    "hits": ("motion", "hit"), "hit": ("motion", "hit"), "hitting": ("motion", "hit"),
    "strikes": ("motion", "hit"), "strike": ("motion", "hit"), "struck": ("motion", "hit"),
    "knocks": ("motion", "hit"), "knock": ("motion", "hit"), "knocked": ("motion", "hit"),
    "swings": ("motion", "swing"), "swing": ("motion", "swing"), "swinging": ("motion", "swing"),
    "swung": ("motion", "swing"), "oscillates": ("motion", "swing"), "oscillate": ("motion", "swing"),
    "oscillating": ("motion", "swing"), "sways": ("motion", "swing"), "sway": ("motion", "swing"),
    "swaying": ("motion", "swing"),
    "thrown": ("motion", "throw"), "throws": ("motion", "throw"), "throw": ("motion", "throw"),
    "threw": ("motion", "throw"), "tossed": ("motion", "throw"), "tosses": ("motion", "throw"),
    "toss": ("motion", "throw"), "launched": ("motion", "throw"), "launches": ("motion", "throw"),
    "flies up": ("motion", "throw"), "fly up": ("motion", "throw"), "goes up": ("motion", "throw"),
    "shoots up": ("motion", "throw"), "rises": ("motion", "throw"),
    "released": ("motion", "release"), "releases": ("motion", "release"), "release": ("motion", "release"),
    "let go": ("motion", "release"),
    "once": ("bounces", 1), "twice": ("bounces", 2), "thrice": ("bounces", 3), "a couple of times": ("bounces", 2),
    "a few times": ("bounces", None), "several times": ("bounces", None), "many times": ("bounces", None),
    # --- where
    "from": ("prep", "from"), "at": ("prep", "at"), "on": ("prep", "at"), "in": ("prep", "at"),
    "to": ("prep", "to"), "towards": ("prep", "to"), "toward": ("prep", "to"),
    "top": ("position", "top"), "top left": ("position", "top left"), "top right": ("position", "top right"),
    "upper left": ("position", "top left"), "upper right": ("position", "top right"),
    "left": ("position", "left"), "right": ("position", "right"), "left hand": ("position", "left"),
    "right hand": ("position", "right"), "center": ("position", "center"), "centre": ("position", "center"),
    "middle": ("position", "center"), "above": ("position", "top"), "high up": ("position", "top"),
    "leftward": ("direction", "left"), "leftwards": ("direction", "left"), "rightward": ("direction", "right"),
    "rightwards": ("direction", "right"),
    # --- how
    "slowly": ("speed", "slow"), "slow": ("speed", "slow"), "gently": ("speed", "slow"),
    "gentle": ("speed", "slow"), "slightly": ("speed", "slow"), "low": ("speed", "slow"),
    "at low speed": ("speed", "slow"), "small amplitude": ("speed", "slow"), "small arc": ("speed", "slow"),
    "narrow arc": ("speed", "slow"),
    "quickly": ("speed", "fast"), "quick": ("speed", "fast"), "fast": ("speed", "fast"),
    "rapidly": ("speed", "fast"), "swiftly": ("speed", "fast"), "hard": ("speed", "fast"),
    "high": ("speed", "fast"), "widely": ("speed", "fast"), "wide": ("speed", "fast"),
    "at high speed": ("speed", "fast"), "large amplitude": ("speed", "fast"), "big amplitude": ("speed", "fast"),
    "wide arc": ("speed", "fast"), "big arc": ("speed", "fast"), "large arc": ("speed", "fast"),
    "low gravity": ("gravity", "low"), "weak gravity": ("gravity", "low"), "reduced gravity": ("gravity", "low"),
    "lower gravity": ("gravity", "low"), "moon gravity": ("gravity", "low"), "on the moon": ("gravity", "low"),
    "high gravity": ("gravity", "high"), "strong gravity": ("gravity", "high"),
    "heavy gravity": ("gravity", "high"), "higher gravity": ("gravity", "high"),
    "increased gravity": ("gravity", "high"),
    "on ice": ("friction", "ice"), "ice": ("friction", "ice"), "icy": ("friction", "ice"),
    "slippery": ("friction", "ice"), "frictionless": ("friction", "ice"), "without friction": ("friction", "ice"),
    "no friction": ("friction", "ice"), "little friction": ("friction", "ice"), "low friction": ("friction", "ice"),
    "on rough ground": ("friction", "rough"), "rough": ("friction", "rough"), "sticky": ("friction", "rough"),
    "a lot of friction": ("friction", "rough"), "lots of friction": ("friction", "rough"),
    "much friction": ("friction", "rough"), "high friction": ("friction", "rough"),
    "strong friction": ("friction", "rough"),
    "bouncy": ("restitution", "bouncy"), "springy": ("restitution", "bouncy"), "elastic": ("restitution", "bouncy"),
    "rubber": ("restitution", "bouncy"), "rubbery": ("restitution", "bouncy"), "soft": ("restitution", "soft"),
    "squishy": ("restitution", "soft"),
    "stops": ("stops", True), "stop": ("stops", True), "stopping": ("stops", True), "stopped": ("stops", True),
    "comes to a stop": ("stops", True), "come to a stop": ("stops", True), "coming to a stop": ("stops", True),
    "comes to rest": ("stops", True), "come to rest": ("stops", True), "coming to rest": ("stops", True),
    "comes to a halt": ("stops", True), "to a stop": ("stops", True), "to a halt": ("stops", True),
    "halts": ("stops", True), "rests": ("stops", True), "settles": ("stops", True),
    "lies still": ("stops", True), "stays still": ("stops", True), "stands still": ("stops", True),
    "stays there": ("stops", True), "stays put": ("stops", True),
    "head on": ("head_on", True), "straight on": ("head_on", True), "directly": ("head_on", True),
    "without bouncing": ("no_bounce", True), "does not bounce": ("no_bounce", True),
    "without a bounce": ("no_bounce", True), "with no bounce": ("no_bounce", True),
    "no bounce": ("no_bounce", True),
    "each other": ("each_other", True), "one another": ("each_other", True),
    "stationary": ("at_rest", True), "resting": ("at_rest", True), "still": ("at_rest", True),
    "motionless": ("at_rest", True), "at rest": ("at_rest", True), "lying": ("at_rest", True),
    "sitting": ("at_rest", True),
    "by": ("agent", True), "into": ("into", True),
    "not": ("negation", True), "never": ("negation", True), "no": ("negation", True),
}


def _table() -> dict[tuple[str, ...], Word]:
    table: dict[str, tuple[str, object]] = {w: ("filler", None) for w in _FILLERS}
    table.update(_PHRASES)
    for colour in PALETTE:
        table[colour] = ("colour", colour)
    for colour in UNDRAWN_COLOURS:
        table[colour] = ("bad_colour", colour)
    for place in UNDRAWN_PLACES:
        table[place] = ("bad_place", place)
    for word, n in NUMBERS.items():
        table[word] = ("count", n)
        table[str(n)] = ("count", n)
    for n in range(1, MAX_BOUNCES + 1):
        for written in {str(n), [k for k, v in NUMBERS.items() if v == n][0]}:
            table[f"{written} times"] = ("bounces", n)
            table[f"{written} time"] = ("bounces", n)
    for verb in ("crash", "crashes", "bump", "bumps", "run", "runs", "roll", "rolls", "slide", "slides", "slam",
                 "slams", "smash", "smashes", "knock", "knocks", "crashing", "rolling", "sliding", "bumping"):
        table[f"{verb} into"] = ("motion", "hit")
    return {tuple(k.split()): Word(*v) for k, v in table.items()}


PHRASES: dict[tuple[str, ...], Word] = _table()
MAX_PHRASE_WORDS = max(len(k) for k in PHRASES)
KNOWN_WORDS: frozenset[str] = frozenset(w for k in PHRASES for w in k)
SINGLE_WORDS: frozenset[str] = frozenset(k[0] for k in PHRASES if len(k) == 1)

# A prompt that parses, per motion: shown with every error so the user sees a working sentence.
EXAMPLES: dict[str, str] = {
    "fall": "a blue ball drops from the top right and bounces twice on the ground",
    "slide": "a red cube slides to the left and slows down because of friction",
    "collide": "a red ball and a blue ball collide head-on",
    "hit": "a heavy red ball hits a light blue ball",
    "swing": "a pendulum on a long rope swings widely",
    "throw": "a ball is thrown up and falls down",
}
