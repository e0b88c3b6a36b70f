"""Fault injection and fault accounting for `afd run` (issue #8): kill roles mid-run, then count what was lost.

    inject.py   hooks that SIGKILL a role (or the redis-server) on a condition, or at random (chaos)
    ledger.py   count_faults: pairs lost / trained twice, teacher jobs created twice / orphaned
"""
