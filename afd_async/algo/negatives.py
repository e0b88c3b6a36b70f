"""Corrupted teacher clips that a discriminator which sees physics and the prompt must rank below the real one.

Why: a D trained only on (teacher, student) pairs can win by scoring motion energy (issue 15: the tiny D's
score tracked pixel motion with ρ≈0.93 and preferred teacher clips shuffled in time to the real ones).
The same teacher clip with its frames shuffled, reversed, dropped or repeated has the teacher's pixels and
(roughly) its motion energy but not its physics; scored for another prompt it has the right physics for the
wrong prompt. DESIGN.md §2.2 uses them twice:

- the D probes (`afd_async/eval/d_probes.py`) measure how often D ranks the real clip above each corruption;
- `algo.d_temporal_negatives` adds them to L_D as extra losers against the real teacher clip
  (`negatives_bt_loss`), L_D = L_BT(teacher, student) + w·mean_kind L_BT(teacher, corrupted teacher).

Every corruption is a function of the clip and an explicit `torch.Generator` (drawn on CPU), so the
sync loop and the async D learner, which seed it from `step_generator(seed, calls, ...)`, build the
same negatives. Videos are `(B, C, F, H, W)`; time is dim 2.

A prompt swap inside the batch needs two prompts in it. With K rollouts per prompt and K = batch size
(the setting where the update moves the student, issue 15) every row has the same prompt, and the
in-batch swap had no valid row: D never learnt to read its prompt. `PromptBank` keeps the last prompts
D was trained on, so such rows get a wrong prompt from earlier batches instead.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F

NegativeKind = Literal["shuffled", "reversed", "frame_drop", "prompt_swap"]
NEGATIVE_KINDS: tuple[NegativeKind, ...] = ("shuffled", "reversed", "frame_drop", "prompt_swap")


@dataclass(frozen=True)
class Negative:
    """One corruption of a batch of teacher clips, row-aligned with the real clips.

    Attributes:
        kind: which corruption.
        video: `(B, C, F, H, W)` the corrupted clips (the real clips for `prompt_swap`).
        text: `(B, text_dim)` the prompt embeddings it is scored with (another row's for `prompt_swap`).
        prompts: the prompt texts it is scored with.
        valid: `(B,)` bool, rows where the corruption differs from the real pair (a prompt swap can only
            land on the same prompt text when the batch repeats it, e.g. K > 1 rollouts per prompt).
    """

    kind: NegativeKind
    video: torch.Tensor
    text: torch.Tensor
    prompts: list[str]
    valid: torch.Tensor


def _check_frames(video: torch.Tensor) -> int:
    if video.dim() != 5:
        raise ValueError(f"expected video (B, C, F, H, W), got shape {tuple(video.shape)}")
    frames = int(video.shape[2])
    if frames < 2:
        raise ValueError(f"a temporal corruption needs at least 2 frames, got {frames}")
    return frames


def _gather_frames(video: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`video[b, :, index[b]]` for every row; `index` `(B, F)` long on CPU."""
    idx = index.to(video.device)[:, None, :, None, None].expand(-1, video.shape[1], -1, video.shape[3], video.shape[4])
    return torch.gather(video, 2, idx)


def shuffle_frames(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each clip's frames in a random order that is never the identity (an identity draw is rolled by one)."""
    frames = _check_frames(video)
    rows = []
    for _ in range(video.shape[0]):
        perm = torch.randperm(frames, generator=generator)
        if torch.equal(perm, torch.arange(frames)):
            perm = perm.roll(1)
        rows.append(perm)
    return _gather_frames(video, torch.stack(rows))


def reverse_frames(video: torch.Tensor) -> torch.Tensor:
    """Each clip played backwards (same frames, same motion energy, time's arrow flipped)."""
    _check_frames(video)
    return video.flip(2)


def drop_repeat_frames(video: torch.Tensor, generator: torch.Generator, *, fraction: float = 0.25) -> torch.Tensor:
    """Each clip with `fraction` of its frames dropped and as many kept frames shown twice (a stutter).

    The frame index stays non-decreasing and starts at frame 0, so the clip still runs forward in time
    with the same length, but its speed jumps: skipped frames, then frozen ones. At least one frame
    (never frame 0) is dropped, so the result always differs from the clip.
    """
    frames = _check_frames(video)
    m = min(frames - 1, max(1, round(fraction * frames)))
    rows = []
    for _ in range(video.shape[0]):
        dropped = 1 + torch.randperm(frames - 1, generator=generator)[:m]
        keep = torch.tensor(sorted(set(range(frames)) - set(dropped.tolist())), dtype=torch.long)
        repeat = keep[torch.randint(len(keep), (m,), generator=generator)]
        rows.append(torch.sort(torch.cat([keep, repeat])).values)
    return _gather_frames(video, torch.stack(rows))


def prompt_derangement(prompts: Sequence[str], generator: torch.Generator, *, tries: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A permutation of the rows that sends each row to a row of another prompt text, where one exists.

    Draws up to `tries` random permutations and keeps the first with no row on its own prompt text
    (else the one with fewest such rows, the earliest on ties): deterministic for a given generator.

    Returns:
        `(perm, valid)`: `(B,)` long row indices and `(B,)` bool, True where `prompts[perm[i]] != prompts[i]`.
    """
    n = len(prompts)
    best: Optional[tuple[int, torch.Tensor]] = None
    for _ in range(max(1, tries)):
        perm = torch.randperm(n, generator=generator)
        same = sum(prompts[int(j)] == prompts[i] for i, j in enumerate(perm))
        if best is None or same < best[0]:
            best = (same, perm)
        if same == 0:
            break
    assert best is not None
    perm = best[1]
    valid = torch.tensor([prompts[int(j)] != prompts[i] for i, j in enumerate(perm)], dtype=torch.bool)
    return perm, valid


class PromptBank:
    """The last `capacity` distinct prompts D was trained on, with their embeddings (kept on CPU).

    Wrong prompts for the rows of a prompt swap that the batch itself cannot give (a batch of one prompt).
    Insertion-ordered, oldest dropped first, so a draw depends only on the batches seen and the generator:
    the sync loop and the D learner, which see the same batches in the same order, draw the same prompts.
    """

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"a prompt bank holds at least one prompt, got capacity {capacity}")
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, prompts: Sequence[str], text: torch.Tensor) -> None:
        """Remember each row's prompt and embedding (a prompt seen again moves to the newest end)."""
        if text.shape[0] != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {text.shape[0]} embeddings")
        rows = text.detach().to("cpu", torch.float32)
        for prompt, row in zip(prompts, rows):
            self._entries.pop(prompt, None)
            self._entries[prompt] = row.clone()
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def draw(self, avoid: str, generator: torch.Generator) -> Optional[tuple[str, torch.Tensor]]:
        """A remembered prompt other than `avoid` and its embedding; None when there is none."""
        others = [p for p in self._entries if p != avoid]
        if not others:
            return None
        pick = others[int(torch.randint(len(others), (1,), generator=generator))]
        return pick, self._entries[pick]

    def state_dict(self) -> dict[str, Any]:
        """`{"prompts": [...], "text": (N, D)}`; no `text` when empty (a zero-row tensor has no dim to keep)."""
        out: dict[str, Any] = {"prompts": list(self._entries)}
        if self._entries:
            out["text"] = torch.stack(list(self._entries.values()))
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        prompts = list(state.get("prompts", []))
        self._entries.clear()
        if prompts:
            self.add(prompts, state["text"])


def make_negative(kind: NegativeKind, video: torch.Tensor, text: torch.Tensor, prompts: Sequence[str],
                  generator: torch.Generator, bank: Optional[PromptBank] = None) -> Negative:
    """The `kind` corruption of teacher clips `video` `(B, C, F, H, W)` for `prompts` (embedded as `text`).

    A prompt swap's rows left on their own prompt (the batch repeats it) take a wrong prompt from `bank`
    where one is given and holds another prompt; they stay invalid otherwise.
    """
    prompts = list(prompts)
    all_rows = torch.ones(video.shape[0], dtype=torch.bool)
    if kind == "shuffled":
        return Negative(kind, shuffle_frames(video, generator), text, prompts, all_rows)
    if kind == "reversed":
        return Negative(kind, reverse_frames(video), text, prompts, all_rows)
    if kind == "frame_drop":
        return Negative(kind, drop_repeat_frames(video, generator), text, prompts, all_rows)
    if kind == "prompt_swap":
        perm, valid = prompt_derangement(prompts, generator)
        swapped_text = text[perm.to(text.device)]
        swapped = [prompts[int(j)] for j in perm]
        if bank is not None and not bool(valid.all()):
            swapped_text = swapped_text.clone()
            for i in torch.nonzero(~valid).flatten().tolist():
                drawn = bank.draw(prompts[i], generator)
                if drawn is not None:
                    swapped[i] = drawn[0]
                    swapped_text[i] = drawn[1].to(swapped_text.device, swapped_text.dtype)
                    valid[i] = True
        return Negative(kind, video, swapped_text, swapped, valid)
    raise ValueError(f"unknown negative kind {kind!r}; known: {', '.join(NEGATIVE_KINDS)}")


def negatives_bt_loss(score_teacher: torch.Tensor, scores_negative: Sequence[torch.Tensor],
                      valid: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over kinds of the BT loss of the real teacher clip against each corruption (§2.2 extra losers).

    L_neg = mean_k mean_{c valid for k} −log σ(D(x^T_c, c) − D(neg_k(x^T_c, c))). A kind with no valid
    row (e.g. a prompt swap in a batch of one prompt) is left out of the mean; none at all gives 0.

    Args:
        score_teacher: `(B,)` D's scores of the real teacher clips.
        scores_negative: per kind, `(B,)` scores of the corrupted clips, row-aligned.
        valid: per kind, `(B,)` bool rows that count.
    """
    terms = []
    for s_n, ok in zip(scores_negative, valid, strict=True):
        if s_n.shape != score_teacher.shape:
            raise ValueError(f"negative scores {tuple(s_n.shape)} do not match teacher scores {tuple(score_teacher.shape)}")
        ok = ok.to(score_teacher.device)
        if bool(ok.any()):
            terms.append(F.softplus(s_n - score_teacher)[ok].mean())
    if not terms:
        return score_teacher.sum() * 0.0  # keeps the graph (DDP) and the dtype
    return torch.stack(terms).mean()
