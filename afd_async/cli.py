"""`afd` command line: thin wiring from Hydra overrides to the library.

    afd run      [overrides...]   the main job: every role as a process on a private Redis (async AFD)
    afd sync     [overrides...]   the synchronous AFD reference loop (oracle / baseline)
    afd pretrain [overrides...]   pretrain the tiny student on weakened-physics clips
    afd pretrain-d [overrides...] pretrain the tiny discriminator on the same clips' corruptions
    afd config   [overrides...]   print the composed, validated config

  roles (what `afd run` and docker compose start, one process each):
    afd teacher-server | teacher-actor | student-actor | feeder | d-learner | student-learner

Overrides use Hydra syntax, e.g. `afd sync algo=sft train.steps=100 experiment=smoke`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from typing import Callable, Sequence

from afd_async.config import load_config
from afd_async.config.convert import ConfigError, to_dict
from afd_async.launch.orphan import watch_supervisor

log = logging.getLogger("afd")


def _load(overrides: Sequence[str]):
    """The validated config; `algo.name` is checked against the objective registry here, the layer above
    both (the config layer cannot import the registry), so a typo is a configuration error in every command."""
    cfg = load_config(overrides)
    from afd_async.train.objectives import get_objective  # defers torch (the registry's updaters) to here

    try:
        get_objective(cfg.algo.name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return cfg


def cmd_config(overrides: Sequence[str]) -> int:
    print(json.dumps(to_dict(_load(overrides)), indent=2))
    return 0


def cmd_sync(overrides: Sequence[str]) -> int:
    # deferred: torch; `afd --help` and `afd config` do not load it
    from afd_async.train.evaluate import describe_change
    from afd_async.train.sync_loop import SyncLoop

    cfg = _load(overrides)
    result = SyncLoop(cfg).run(show_progress=sys.stderr.isatty())
    print(
        f"sync {cfg.algo.name}: {result.steps} steps in {result.seconds:.0f}s | final D accuracy {result.final_d_acc:.3f} | "
        f"{describe_change(result.start.as_dict(''), result.final.as_dict(''))} | outputs in {result.output_dir}"
    )
    return 0


def cmd_run(overrides: Sequence[str]) -> int:
    # deferred: torch (as above)
    from afd_async.launch.run import main as run_main

    return run_main(_load(overrides), list(overrides))


def cmd_pretrain(overrides: Sequence[str]) -> int:
    # deferred: torch (as above)
    from afd_async.train.pretrain import pretrain

    cfg = _load(overrides)
    path = pretrain(cfg, on_log=lambda r: print(json.dumps(r), flush=True))
    print(f"saved {path}")
    return 0


def cmd_pretrain_d(overrides: Sequence[str]) -> int:
    # deferred: torch (as above)
    from afd_async.train.pretrain_d import pretrain_discriminator

    path = pretrain_discriminator(_load(overrides), on_log=lambda r: print(json.dumps(r), flush=True))
    print(f"saved {path}")
    return 0


# Role entry points: "module:function", the function takes the validated RootConfig and returns an exit code.
ROLES: dict[str, str] = {
    "teacher-server": "actors.teacher_server:main",
    "teacher-actor": "actors.teacher_actor:main",
    "student-actor": "actors.student_actor:main",
    "feeder": "learners.feeder:main",
    "d-learner": "learners.d_learner:main",
    "student-learner": "learners.student_learner:main",
}


def _role_command(target: str) -> Callable[[Sequence[str]], int]:
    def run(overrides: Sequence[str]) -> int:
        module, func = target.split(":")
        watch_supervisor()  # started by `afd run`: stop if the launcher dies without stopping us
        try:
            return int(getattr(importlib.import_module(module), func)(_load(overrides)) or 0)
        finally:  # the role is done: a SIGTERM now (interpreter shutdown resets Python handlers) must not make
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # its exit code -15; SIG_IGN survives the reset

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "sync": cmd_sync,
    "run": cmd_run,
    "pretrain": cmd_pretrain,
    "pretrain-d": cmd_pretrain_d,
    "config": cmd_config,
    **{name: _role_command(target) for name, target in ROLES.items()},
}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="afd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.steps=100 algo=sft")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("AFD_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return COMMANDS[args.command](args.overrides)
    except ConfigError as e:
        print(f"afd: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
