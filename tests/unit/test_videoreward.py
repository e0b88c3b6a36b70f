"""VideoReward discriminator on a tiny random Qwen2-VL: scores, gradients, both checkpoint formats."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from afd_async.checkpoint import CheckpointError  # noqa: E402
from afd_async.models.videoreward.loaders import (  # noqa: E402
    load_afd_discriminator, load_videoreward_checkpoint, save_afd_discriminator, tiny_tokenizer,
)
from afd_async.models.videoreward.model import VideoRewardDiscriminator  # noqa: E402
from afd_async.models.videoreward.video import budget_size, sample_indices  # noqa: E402

SPECIAL = {"<|im_start|>": 50, "<|im_end|>": 51, "<|vision_start|>": 52, "<|vision_end|>": 53, "<|video_pad|>": 54,
           "<|image_pad|>": 55, "<|VQ_reward|>": 56, "<|MQ_reward|>": 57, "<|TA_reward|>": 58}
TINY = dict(
    text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                     bos_token_id=None, eos_token_id=None, pad_token_id=1),
    vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2),
    video_token_id=54, image_token_id=55, vision_start_token_id=52, vision_end_token_id=53,
)


def _d(**kw) -> VideoRewardDiscriminator:
    torch.manual_seed(0)
    tok = tiny_tokenizer(["a", "ball", "falls"], SPECIAL)
    return VideoRewardDiscriminator(tokenizer=tok, backbone=TINY, lora_rank=4, lora_alpha=8, fps=8.0,
                                    max_pixels=56 * 84, **kw)


def test_sampling_rules() -> None:
    idx = sample_indices(81, 16.0)  # 81 frames at 16 fps = 5.1 s -> 10 frames at 2 fps (a multiple of the temporal patch)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 80
    assert len(sample_indices(8, 8.0)) == 2
    h, w = budget_size(480, 832, max_pixels=448 * 448)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 448 * 448 and abs(w / h - 832 / 480) < 0.2


def test_scores_and_grads_reach_lora_head_and_pixels() -> None:
    d = _d()
    video = torch.rand(2, 3, 16, 48, 80, requires_grad=True) * 2 - 1
    video.retain_grad()
    s = d(video, ["a ball falls", "a ball"])
    assert s.shape == (2,) and torch.isfinite(s).all()
    names = {n for n, p in d.named_parameters() if p.requires_grad}
    assert names and all(".lora_" in n or n.startswith("rm_head") for n in names)
    (-torch.nn.functional.logsigmoid(s[0] - s[1])).backward()  # Bradley–Terry, teacher first
    assert d.rm_head.weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in d.named_parameters() if "lora_B" in n)
    assert video.grad is not None and video.grad.abs().sum() > 0


def test_afd_checkpoint_round_trip(tmp_path) -> None:
    d = _d()
    with torch.no_grad():
        for n, p in d.named_parameters():
            if "lora_B" in n:
                p.normal_()
    video = torch.rand(1, 3, 8, 48, 80) * 2 - 1
    s = d(video, ["a ball falls"])
    save_afd_discriminator(d, tmp_path / "discriminator.pt", meta={"step": 3})
    d2 = _d()
    assert load_afd_discriminator(d2, tmp_path / "discriminator.pt") == {"step": 3}
    torch.testing.assert_close(d2(video, ["a ball falls"]), s)
    obj = torch.load(tmp_path / "discriminator.pt")
    obj["rm_head"]["weight"] = torch.zeros(2, 32)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="key 'rm_head.weight' has shape"):
        load_afd_discriminator(_d(), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="lora_rank"):
        load_afd_discriminator(VideoRewardDiscriminator(tokenizer=tiny_tokenizer([], SPECIAL), backbone=TINY,
                                                        lora_rank=2, lora_alpha=8), tmp_path / "discriminator.pt")


def test_videoreward_checkpoint_layout(tmp_path) -> None:
    """A VideoAlign-style folder: peft adapter file in the transformers-4 names + non-LoRA state."""
    from safetensors.torch import save_file

    d = _d()
    adapter, rest = {}, {}
    for k, v in d.state_dict().items():
        if ".lora_" in k:
            old = k[len("backbone."):].replace("model.language_model.", "model.").replace(".default.weight", ".weight")
            adapter["base_model.model." + old] = torch.randn_like(v)
        elif k.startswith("rm_head."):
            rest["base_model.model." + k] = torch.randn_like(v)
    ck = tmp_path / "checkpoint-1200"
    ck.mkdir()
    save_file(adapter, str(ck / "adapter_model.safetensors"))
    torch.save(rest, ck / "non_lora_state_dict.pth")
    (tmp_path / "checkpoint-100").mkdir()
    d2 = _d()
    assert load_videoreward_checkpoint(d2, tmp_path) == 1200
    k = next(k for k in adapter if "layers.1.mlp.down_proj.lora_A" in k)
    torch.testing.assert_close(d2.state_dict()["backbone.model.language_model.layers.1.mlp.down_proj.lora_A.default.weight"],
                               adapter[k])
    adapter.pop(k)
    save_file(adapter, str(ck / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="missing key 'backbone.model.language_model.layers.1.mlp.down_proj.lora_A"):
        load_videoreward_checkpoint(_d(), ck)


def test_config_requires_backbone() -> None:
    from afd_async.config.convert import from_dict
    from afd_async.config.discriminator import DiscriminatorConfig
    from afd_async.models.factory import make_discriminator

    cfg = from_dict(DiscriminatorConfig, dict(kind="videoreward"))
    with pytest.raises(CheckpointError, match="backbone_path is required"):
        make_discriminator(cfg, 384)


def test_patch_layout_matches_qwen2vl_processor() -> None:
    """Our torch-side patches equal transformers' Qwen2-VL image processor on a frame (repeated over time, as it does)."""
    from transformers import Qwen2VLImageProcessor

    from afd_async.models.videoreward.video import video_patches

    frame = torch.randint(0, 256, (56, 84, 3), dtype=torch.uint8)
    ref = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 84)(images=[frame.numpy()], return_tensors="pt")
    vid = (frame.permute(2, 0, 1).float() / 127.5 - 1)[:, None].repeat(1, 2, 1, 1)
    mine, grid = video_patches(vid, size=(56, 84))
    assert grid.tolist() == ref["image_grid_thw"][0].tolist()
    torch.testing.assert_close(mine, ref["pixel_values"].float(), atol=2e-2, rtol=0)
