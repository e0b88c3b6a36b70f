"""`python -m afd_async.metrics render | check` (see `cli.main`); the compose health check runs `check`."""

import sys

from afd_async.metrics.cli import main

sys.exit(main())
