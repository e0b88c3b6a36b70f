"""Chunk-wise VAE decode with the causal cache carried across chunks equals one decode of the whole clip."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN, TINY_WAN_VAE  # noqa: E402
from afd_async.models.wan.loaders import WanVAE  # noqa: E402
from afd_async.models.wan.streaming import StreamingDecoder, rollout_video  # noqa: E402


def _vae() -> WanVAE:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return WanVAE(AutoencoderKLWan(**TINY_WAN_VAE).eval())


def test_chunked_decode_matches_full_decode() -> None:
    vae = _vae()
    lat = torch.randn(1, 4, 6, 4, 6)
    full = vae.decode(lat)
    dec = StreamingDecoder(vae)
    for _ in range(2):  # reset starts a fresh clip: the second pass gives the same frames
        dec.reset()
        parts = [dec.decode_chunk(lat[:, :, i : i + 3]) for i in (0, 3)]
        assert [p.shape[2] for p in parts] == [9, 12]
        torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=1e-4, atol=1e-5)


def test_rollout_video_decodes_each_chunk() -> None:
    torch.manual_seed(0)
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=3, max_frames=6).eval()
    vae = _vae()
    m.attach_vae(vae)
    text = torch.randn(1, 5, 16)
    kw = dict(timesteps=[1000, 500], shift=5.0, num_frames=21)
    lat, video = rollout_video(m, StreamingDecoder(vae), text, generator=torch.Generator().manual_seed(3), **kw)
    ref = m.rollout(text, generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(lat, ref)
    assert video.shape == (1, 3, 21, 32, 48)
    torch.testing.assert_close(video, m.decode(ref), rtol=1e-4, atol=1e-5)


def test_fused_rms_norm_matches_diffusers() -> None:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    from afd_async.models.wan.vae_fused import _rms_norm, fuse_rms_norms, unfuse_rms_norms

    torch.manual_seed(0)
    for channel_first, x in ((True, torch.randn(2, 8, 3, 4, 5)), (False, torch.randn(2, 3, 8))):
        norm = WanRMS_norm(8, channel_first=channel_first, images=False, bias=True)
        with torch.no_grad():
            norm.gamma.normal_()
            norm.bias.normal_()
        got = _rms_norm(x.bfloat16(), norm.scale, norm.gamma.bfloat16(), norm.bias.bfloat16(), 1 if channel_first else -1)
        torch.testing.assert_close(got, norm.bfloat16()(x.bfloat16()), rtol=0, atol=0)
    vae = _vae()
    n = fuse_rms_norms(vae.vae)
    assert n > 0 and sum("forward" in m.__dict__ for m in vae.vae.modules()) == n
    unfuse_rms_norms(vae.vae)
    assert not any("forward" in m.__dict__ for m in vae.vae.modules())
