"""Thin process entry points: compose config, build objects from afd_async, run the loop."""
