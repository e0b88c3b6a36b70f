"""`PromptError`: a prompt outside the grammar (raised by `grammar.parse_prompt` and `reading.Reading`)."""

from __future__ import annotations

from typing import Optional, Sequence

from afd_async.physics.vocabulary import EXAMPLES

HELP = "all words: python -m afd_async.physics --words"
DEFAULT_EXAMPLE = EXAMPLES["fall"]


class PromptError(ValueError):
    """A prompt outside the grammar.

    The message (one line) names the first word or phrase that cannot be
    placed, the nearest known words when the word is unknown, and a prompt that
    parses. Attributes keep the parts: `problem`, `prompt`, `word`,
    `suggestions`, `example`.
    """

    def __init__(self, problem: str, prompt: str, *, word: Optional[str] = None,
                 suggestions: Sequence[str] = (), example: str = DEFAULT_EXAMPLE) -> None:
        self.problem, self.prompt, self.word = problem, prompt, word
        self.suggestions, self.example = tuple(suggestions), example
        near = ""
        if word is not None:
            near = ("; nearest known words: " + ", ".join(repr(s) for s in self.suggestions)
                    if self.suggestions else "; no known word is close")
        super().__init__(f"{prompt!r}: {problem}{near}; a prompt that parses: {example!r} ({HELP})")

