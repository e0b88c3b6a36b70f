"""Corrupted teacher clips that a discriminator which sees physics and the prompt must rank below the real one.

Why: a D trained only on (teacher, student) pairs can win by scoring motion energy (issue 15: the tiny D's
score tracked pixel motion with ρ≈0.93 and preferred teacher clips shuffled in time to the real ones).
The same teacher clip with its frames shuffled, reversed, dropped or repeated has the teacher's pixels and
(roughly) its motion energy but not its physics; scored for another prompt it has the right physics for the
wrong prompt. With its time bent (`time_warp`) it keeps the path, the first and last frame and the event
order, and only the velocity profile is wrong: the closest a generic corruption comes to wrong gravity or
friction, and the error the physics score measures. DESIGN.md §2.2 uses them twice:

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

NegativeKind = Literal["shuffled", "reversed", "frame_drop", "prompt_swap", "time_warp"]
NEGATIVE_KINDS: tuple[NegativeKind, ...] = ("shuffled", "reversed", "frame_drop", "prompt_swap", "time_warp")


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
        winner: `(B, C, F, H, W)` the clips it must lose to, where not the real ones (`time_warp`: the real
            clip resampled the same way at its own pace, so both carry the same interpolation blur).
    """

    kind: NegativeKind
    video: torch.Tensor
    text: torch.Tensor
    prompts: list[str]
    valid: torch.Tensor
    winner: Optional[torch.Tensor] = None


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


def resample_time(video: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Each clip shown at fractional frame times `times` `(B, F')` in [0, F − 1], blending the two nearest
    frames linearly."""
    frames = _check_frames(video)
    t = times.clamp(0, frames - 1).float()
    lo = t.floor().long().clamp(max=frames - 2)
    frac = (t - lo.float()).to(video.device, video.dtype)[:, None, :, None, None]
    return (1 - frac) * _gather_frames(video, lo) + frac * _gather_frames(video, lo + 1)


def time_warp(video: torch.Tensor, generator: torch.Generator, *, slow: tuple[float, float] = (0.5, 0.75),
              fast: tuple[float, float] = (1.4, 2.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """(warped, paced): each clip with its time bent, and the same clip at its own pace, for `time_warp`.

    The warped clip plays frame time (F − 1)·(i / (F − 1))^γ, γ drawn from `slow` or `fast` (half the rows
    each): same first and last frame, same path, the same pixels, but a wrong velocity profile — starting slow
    and speeding up (γ > 1) or the reverse, as wrong gravity or friction would look. Its winner is the real
    clip resampled at δ + i·(F − 1 − δ)/(F − 1), δ in (0.3, 0.7): the pace of the truth within 1/(F − 1), and
    blended between frames like the warped clip, so interpolation blur cannot tell them apart.
    """
    frames = _check_frames(video)
    b = video.shape[0]
    i = torch.arange(frames, dtype=torch.float64) / (frames - 1)
    pick_fast = torch.rand(b, generator=generator, dtype=torch.float64) < 0.5
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    gamma = torch.where(pick_fast, fast[0] + u * (fast[1] - fast[0]), slow[0] + u * (slow[1] - slow[0]))
    warped_t = (frames - 1) * i[None, :] ** gamma[:, None]
    delta = 0.3 + 0.4 * torch.rand(b, generator=generator, dtype=torch.float64)
    paced_t = delta[:, None] + i[None, :] * (frames - 1 - delta[:, None])
    return resample_time(video, warped_t), resample_time(video, paced_t)


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
    if kind == "time_warp":
        warped, paced = time_warp(video, generator)
        return Negative(kind, warped, text, prompts, all_rows, winner=paced)
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
                      valid: Sequence[torch.Tensor],
                      scores_winner: Optional[Sequence[Optional[torch.Tensor]]] = None) -> torch.Tensor:
    """Mean over kinds of the BT loss of the real teacher clip against each corruption (§2.2 extra losers).

    L_neg = mean_k mean_{c valid for k} −log σ(D(x^T_c, c) − D(neg_k(x^T_c, c))). A kind with no valid
    row (e.g. a prompt swap in a batch of one prompt) is left out of the mean; none at all gives 0.

    Args:
        score_teacher: `(B,)` D's scores of the real teacher clips.
        scores_negative: per kind, `(B,)` scores of the corrupted clips, row-aligned.
        valid: per kind, `(B,)` bool rows that count.
        scores_winner: per kind, the scores of the clips that kind must lose to where not the real ones
            (`Negative.winner`), else None.
    """
    winners = list(scores_winner) if scores_winner is not None else [None] * len(scores_negative)
    terms = []
    for s_n, ok, s_w in zip(scores_negative, valid, winners, strict=True):
        s_w = score_teacher if s_w is None else s_w
        if s_n.shape != score_teacher.shape or s_w.shape != score_teacher.shape:
            raise ValueError(f"negative scores {tuple(s_n.shape)} do not match teacher scores {tuple(score_teacher.shape)}")
        ok = ok.to(score_teacher.device)
        if bool(ok.any()):
            terms.append(F.softplus(s_n - s_w)[ok].mean())
    if not terms:
        return score_teacher.sum() * 0.0  # keeps the graph (DDP) and the dtype
    return torch.stack(terms).mean()
