"""The asynchronous system's roles as library code: each role's loop (`*_role.py`) over its state
classes, all sharing one `RoleContext` (`context.py`); the wiring is in `launch/roles/`, the entry points
in `actors/`, `learners/`.

    teacher actors ──► teacher cache (Redis) ◄── student actors ──► pair stream (Redis)
                                                       ▲                  │
                                   student weights ────┘           feeder (groups → batches)
                                   (ZeroMQ, versioned)              │ ZeroMQ feeds, credit-based
                                         ▲                ┌─────────┴─────────┐
                                         └──── student learner ◄── D weights ── D learner

Work is planned in *groups*: group n is one learner batch (`train/plan.py`), rolled out
by one student actor with one policy version, collated by the feeder as one
batch. Groups are numbered like the synchronous loop's steps, and draw the same
prompts and noise, so at staleness 0 the async system reproduces `afd sync`.
"""
