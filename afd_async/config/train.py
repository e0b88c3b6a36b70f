"""Run schema (root key `train`): steps, batch, seed, device, output folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from afd_async.config.convert import ConfigError

if TYPE_CHECKING:  # the schema stays importable without torch
    import torch

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass
class TrainConfig:
    """What every loop (sync, pretrain, async learners) needs to know about the run."""

    steps: int = 200  # student learner steps
    batch_size: int = 8  # prompts per batch
    seed: int = 0
    device: str = "cpu"  # where every role computes: cpu, cuda, cuda:<index> or mps (checked at role start)
    dtype: Literal["float32", "bfloat16"] = "float32"
    output_dir: str = "outputs/run"
    log_every: int = 10
    eval_every: int = 50  # steps between physics evaluations on eval prompts (0: only at start/end)
    eval_prompts: int = 16  # eval prompts used by the evaluator
    # which policy the evaluator and the sample grid roll out: `ema` (the eval EMA, as DiffusionNFT evaluates)
    # or `old` (θ_old, what the actors sample with); both are saved at the end
    eval_policy: Literal["ema", "old"] = "ema"
    # D probes (afd_async/eval/d_probes.py): every this many D step calls (warm-up included) and at the end, the
    # fraction of held-out teacher clips D ranks above the same clip shuffled in time, reversed, with frames
    # dropped, or scored for another prompt; logged as d_probe_* records in metrics.jsonl (0: off)
    d_probe_every: int = 10
    d_probe_clips: int = 8  # held-out probe clips: the first eval-split prompts, one teacher clip each (>= 2)
    torch_threads: int = 0  # 0: leave torch's default
    checkpoint_every: int = 10  # learner groups (student: steps) between resumable learner checkpoints; a learner acks
    # a batch only once a checkpoint holds its step, so the feeder keeps up to this many batches per learner for
    # redelivery (memory) and a crash redoes at most this many steps. Real-scale runs: raise it (a Wan
    # checkpoint is GBs); the feeder's cap on unacked batches per learner follows it
    checkpoint_dir: str = ""  # where learners keep resumable state, one folder per learner ("": <output_dir>/checkpoints)
    checkpoint_keep: int = 2  # newest learner checkpoints kept (older ones deleted after a new one is durable)
    resume: bool = True  # a learner resumes from its newest checkpoint of this run (same Redis run id) on start;
    # afd run resumes an output folder only if its recorded config matches (run.json, afd_async/launch/run_record.py).
    # false: afd run starts the folder over (deletes its Redis data, learner checkpoints, metrics.jsonl, summary.json)
    resume_with_changes: bool = False  # afd run: resume a folder whose recorded config differs in keys that matter
    # (the differences are printed and kept in run.json); off: such a folder is refused, naming the differing keys
    stall_timeout_s: float = 300.0  # afd run: stop with a diagnosis (the role, what it waits for, its log) when no pair
    # is written, no D or student step made and no learner phase changes for this long once every role has started
    # (0: never). Raise it for big models whose evaluation takes longer
    start_timeout_s: float = 600.0  # afd run: stop with a diagnosis when a role has not finished starting (imports,
    # model build, binding its sockets) this long after the last role that did (0: never). Start-up under load or at
    # real scale is slow and says nothing about a stalled pipeline, so it has its own, longer clock
    stop_grace_s: float = 10.0  # afd run, on SIGTERM/SIGINT or a failure: every role gets SIGTERM at once and this
    # long to stop (a learner finishes its step and checkpoints), then SIGKILL
    checkpoint_d_history: bool = True  # the student learner keeps each D version it used since its last checkpoint,
    # so a resumed run redoes those steps with the same D (exact resume); costs one D write per D version used
    sync_teacher_codec: bool = False  # afd sync: pass teacher clips through the local server's MP4 encode/decode,
    # so its clips are bit-identical to what afd run's teacher actors cache (the staleness-0 oracle comparison)

    def __post_init__(self) -> None:
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:<index> or mps, got {self.device!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if self.d_probe_every < 0:
            raise ValueError(f"d_probe_every counts D steps between probes (0 = off), got {self.d_probe_every}")
        if self.d_probe_every and self.d_probe_clips < 2:
            raise ValueError(f"d_probe_clips must be >= 2 (the prompt-swap probe needs another prompt), "
                             f"got {self.d_probe_clips}")
        if self.stall_timeout_s < 0 or self.start_timeout_s < 0 or not self.stop_grace_s > 0:
            raise ValueError(f"need stall_timeout_s >= 0 and start_timeout_s >= 0 (0: never) and stop_grace_s > 0, got "
                             f"{self.stall_timeout_s}, {self.start_timeout_s} and {self.stop_grace_s}")
        if self.checkpoint_every < 1 or self.checkpoint_keep < 1:
            raise ValueError("checkpoint_every and checkpoint_keep must be >= 1 (acks wait for checkpoints)")


def resolve_device(device: str) -> "torch.device":
    """`train.device` as a `torch.device`, checked against this machine: raises `ConfigError` naming the key.

    Why: the config is composed wherever `afd` runs, but a role computes where it is started; called at
    the start of every role (sync loop, actors, learners), so a GPU config on a machine without the GPU
    fails at once with the key to change, not deep inside torch at the first `.to(device)`.
    """
    # deferred: config stays torch-free (teacher actors and the launcher read it)
    import torch

    if not _DEVICE.match(device):
        raise ConfigError(f"train.device={device!r}: must be cpu, cuda, cuda:<index> or mps")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={device!r} but CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False); set train.device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device={device!r} but only {torch.cuda.device_count()} CUDA devices are visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={device!r} but MPS is not available on this machine; set train.device=cpu")
    return dev
