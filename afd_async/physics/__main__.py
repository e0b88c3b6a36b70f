"""`python -m afd_async.physics [PROMPT ...]`: print the prompt grammar, or the scene each prompt means."""

from __future__ import annotations

import sys

from afd_async.physics.grammar import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
