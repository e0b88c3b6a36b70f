"""The diffusers backend on a tiny random text-to-video pipeline the test builds and saves itself.

Everything is offline: the CLIP tokenizer gets a byte-level vocabulary written
here (every byte symbol, alone and word-final; no merges), the UNet3D, VAE and
CLIP text encoder come from tiny configs with random weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from afd_async.teacher.server import FaultConfig, create_app, diffusers_backend, frames_to_clip, serve
from afd_async.video.codec import decode_mp4


def _byte_vocab() -> dict[str, int]:
    """GPT-2/CLIP byte-to-symbol table, each symbol alone and with `</w>`, plus the two specials."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for c in cs]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = 512, 513
    return vocab


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    unet = UNet3DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=2,
    )
    vae = AutoencoderKL(block_out_channels=(4,), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        norm_num_groups=2, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, projection_dim=8, bos_token_id=512, eos_token_id=513, pad_token_id=513,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    assert tokenizer("a ball").input_ids == [512, 320, 65, 64, 75, 331, 513]  # real tokens, not <unk>
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
    path = tmp_path_factory.mktemp("tiny_t2v")
    pipe.save_pretrained(path)
    return path


def test_diffusers_backend_renders_a_clip(pipeline_dir: Path) -> None:
    backend = diffusers_backend(str(pipeline_dir), height=16, width=16, fps=4.0, seconds=1.0, num_inference_steps=2)
    clip = backend("a red ball falls", 3, {})
    assert clip.frames.shape == (4, 16, 16, 3) and clip.frames.dtype == np.uint8 and clip.fps == 4.0
    assert np.array_equal(clip.frames, backend("a red ball falls", 3, {}).frames)  # seeded
    wider = backend("a red ball falls", 3, {"width": 24, "seconds": 0.5})
    assert wider.frames.shape == (2, 16, 24, 3)

    app = create_app(backend=backend, api_keys=["k"], create_rate_per_min=600, max_in_flight=2, max_queued=2,
                     render_latency_s=0.0, faults=FaultConfig(), result_ttl_s=60.0,
                     default_size="16x16", default_seconds=1.0)  # a create without size/seconds gets these
    import httpx

    with serve(app) as handle, httpx.Client(base_url=handle.url, headers={"Authorization": "Bearer k"}) as client:
        video_id = client.post("/v1/videos", json={"prompt": "a ball", "seed": 3}).json()["id"]
        deadline = time.monotonic() + 60.0
        while (body := client.get(f"/v1/videos/{video_id}").json())["status"] in ("queued", "in_progress"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert body["status"] == "completed", body
        out = decode_mp4(client.get(f"/v1/videos/{video_id}/content").content,
                         max_frames=16, max_pixels=1024, max_bytes=1 << 20)
        assert out.frames.shape == (4, 16, 16, 3)


def test_frames_to_clip_accepts_pipeline_output_shapes() -> None:
    batch = np.random.default_rng(0).random((1, 3, 8, 10, 3)).astype(np.float32)
    assert frames_to_clip(batch, 8.0).frames.shape == (3, 8, 10, 3)
    assert frames_to_clip(torch.from_numpy(batch[0]).permute(0, 3, 1, 2), 8.0).frames.shape == (3, 8, 10, 3)
    pil_like = [[(batch[0, i] * 255).astype(np.uint8) for i in range(3)]]
    clip = frames_to_clip(pil_like, 8.0)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (3, 8, 10, 3)
    with pytest.raises(ValueError):
        frames_to_clip(np.zeros((8, 10, 3)), 8.0)
