"""Each role's wiring: config in, collaborators (models, sockets, stores) built, the role's loop run.

The entry points (`actors/`, `learners/`) call `run_<role>(cfg)` here; the loops are `runtime/*_role.py`.
"""
