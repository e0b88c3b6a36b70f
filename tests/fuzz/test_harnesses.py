"""The fuzz harnesses cannot rot: every target runs over its seed corpus, and over
truncations and byte flips of it, here in pytest (atheris itself runs only from `run.py`)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_corpus import seeds  # noqa: E402
from fuzz_targets import TARGETS  # noqa: E402


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_runs_over_its_seed_corpus_and_simple_mutations(target: str) -> None:
    fn, corpus = TARGETS[target], seeds(target)
    assert corpus, f"{target}: empty seed corpus"
    rng = random.Random(0)
    for seed in corpus:
        fn(seed)
        for _ in range(20):
            b = bytearray(seed)
            b[rng.randrange(len(b))] = rng.randrange(256)
            fn(bytes(b))
            fn(seed[: rng.randrange(len(seed))])


def test_targets_still_fail_on_an_undocumented_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A harness must not swallow everything: an unexpected exception type escapes."""
    import fuzz_targets

    def boom(*a, **k):
        raise KeyError("bug")

    monkeypatch.setattr(fuzz_targets, "probe_mp4", boom)
    with pytest.raises(KeyError):
        TARGETS["mp4"](seeds("mp4")[0])
