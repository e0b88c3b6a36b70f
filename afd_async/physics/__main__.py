"""`python -m afd_async.physics [--words | PROMPT ...]`: the prompt grammar, every word, or each prompt's scene."""

from __future__ import annotations

import sys

from afd_async.physics.grammar import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
