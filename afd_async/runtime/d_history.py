"""The discriminator versions the student learner used since its last checkpoint, kept on disk.

Why: a resumed student learner redoes the steps after its checkpoint. Step s must be
scored by the D that the first attempt used (version ≥ W + (s+1)·ratio − k_D), but the
D learner has moved on meanwhile, and the newest D would give other advantages. So
whenever the learner loads a new D version before step s, it first writes it here as
`d-s<step>-v<version>.safetensors`; a redo of step s loads that file, and keeps the D it
holds at a step without a file (the first attempt did the same). Files of steps below
the newest checkpoint are deleted when it is written (the checkpoint holds the current D).

Cost: one D write per D change (every student step when D trains every step); off with
`train.checkpoint_d_history=false`, then a redone step uses the newest allowed D instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Optional

import torch
from safetensors.torch import load_file, save_file

_FILE = re.compile(r"^d-s(\d{8})-v(\d+)\.safetensors$")


class DHistory:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _files(self) -> dict[int, tuple[int, Path]]:
        out = {}
        for p in self.dir.iterdir():
            m = _FILE.match(p.name)
            if m:
                out[int(m.group(1))] = (int(m.group(2)), p)
        return out

    @property
    def redo_until(self) -> int:
        """The last step the first attempt reached with a recorded D (-1: none)."""
        return max(self._files(), default=-1)

    def record(self, step: int, version: int, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Save D `version`, first used at `step` (atomic; no-op when that step is recorded already)."""
        if step in self._files():
            return
        path = self.dir / f"d-s{step:08d}-v{version}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().to("cpu").clone().contiguous() for k, v in state_dict.items()}, str(tmp))
        os.replace(tmp, path)

    def lookup(self, step: int) -> Optional[tuple[int, dict[str, torch.Tensor]]]:
        """(version, weights) of the D first used at `step`, or None."""
        hit = self._files().get(step)
        return None if hit is None else (hit[0], load_file(str(hit[1])))

    def prune(self, below_step: int) -> None:
        for step, (_, p) in self._files().items():
            if step < below_step:
                p.unlink(missing_ok=True)
