"""FVD-style distribution distance between teacher and student clips, on a fixed random network.

FVD proper uses an I3D network trained on Kinetics; its weights are a
download, which this project's default path must not need, and it was never
trained on 32x32 renderings of balls. Instead the features come from a small
3D-convolutional network with **random weights drawn from a fixed seed**
(`numpy`'s PCG64, stable across numpy and torch versions), which needs no
download and is identical on every machine:

    (3, F, H, W) -> conv3d 3x3x3, 16, stride (1,2,2) -> ReLU
                 -> conv3d 3x3x3, 32, stride (2,2,2) -> ReLU
                 -> conv3d 3x3x3, 32, stride (2,2,2) -> ReLU
                 -> per channel mean and std over (t, h, w)  => 64 features
    plus 2 motion features: mean |frame difference| of the input and of the first layer.

Random convolutional features are a known, usable stand-in for learned ones
for *distribution* distances at small scale (they respond to colour, shape,
position and temporal change), but:

- they are not perceptually calibrated: the number only ranks clip sets
  compared on the same network, prompts and clip length; never compare it with
  published FVD values;
- with N clips per side the covariance has rank < N, and the Fréchet distance
  is biased upward for small N (both sides of a table share the bias when they
  share N, so rows are comparable; the teacher-vs-teacher row gives the floor).

The Fréchet distance between Gaussians fitted to the two feature sets is
||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), computed with
symmetric eigendecompositions (no scipy needed).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FEATURE_SEED = 20240607
LAYERS: tuple[tuple[int, tuple[int, int, int]], ...] = ((16, (1, 2, 2)), (32, (2, 2, 2)), (32, (2, 2, 2)))


class RandomVideoFeatures(nn.Module):
    """Fixed random 3D-conv feature extractor (see the module docstring); no trainable use."""

    def __init__(self, seed: int = FEATURE_SEED, in_channels: int = 3) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.strides = [s for _, s in LAYERS]
        weights = []
        c_in = in_channels
        for c_out, _ in LAYERS:
            fan_in = c_in * 27
            w = rng.standard_normal((c_out, c_in, 3, 3, 3)) * np.sqrt(2.0 / fan_in)  # He init keeps scale per layer
            weights.append(nn.Parameter(torch.from_numpy(w.astype(np.float32)), requires_grad=False))
            c_in = c_out
        self.weights = nn.ParameterList(weights)

    @property
    def dim(self) -> int:
        return 2 * LAYERS[-1][0] + 2

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """`(B, 3, F, H, W)` in [-1, 1] -> `(B, dim)` float64 features."""
        x = videos.float()
        motion = [x.diff(dim=2).abs().mean(dim=(1, 2, 3, 4))]
        for i, (w, stride) in enumerate(zip(self.weights, self.strides)):
            x = F.relu(F.conv3d(x, w, stride=stride, padding=1))
            if i == 0:
                motion.append(x.diff(dim=2).abs().mean(dim=(1, 2, 3, 4)) if x.shape[2] > 1 else x.new_zeros(x.shape[0]))
        feats = torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4)), torch.stack(motion, 1)], dim=1)
        return feats.double()


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets `a` `(N, D)` and `b` `(M, D)` (N, M >= 2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (N >= 2, D) feature sets of one D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(s_a)
    cross = _sqrtm_psd(root_a @ s_b @ root_a)
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(cross))
    return max(value, 0.0)


def video_frechet_distance(a: torch.Tensor, b: torch.Tensor, *, net: RandomVideoFeatures | None = None,
                           batch_size: int = 16) -> float:
    """Fréchet distance between two clip sets `(N, 3, F, H, W)` in [-1, 1] on the fixed random network."""
    net = net or RandomVideoFeatures()

    def feats(v: torch.Tensor) -> np.ndarray:
        return torch.cat([net(v[i : i + batch_size]) for i in range(0, len(v), batch_size)]).numpy()

    return frechet_distance(feats(a), feats(b))
