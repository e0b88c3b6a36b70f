"""The offline MiniLM encoder loads with no hub, and the cache avoids re-encoding."""

from __future__ import annotations

import pytest
import torch

from afd_async.models.text_encoder import CachedTextEncoder, HashEncoder


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    return CachedTextEncoder("minilm", cache_dir=str(tmp_path_factory.mktemp("emb")))


def test_minilm_embeds_offline_and_separates_meanings(minilm):
    e = minilm.encode(["a red ball falls from the top", "a red ball drops from the top", "a pendulum swings"])
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.1  # paraphrase closer than a different scene


def test_disk_cache_serves_without_loading_the_model(minilm):
    prompts = ["two balls collide head-on", "a blue square slides left and stops"]
    first = minilm.encode(prompts)
    fresh = CachedTextEncoder("minilm", cache_dir=str(minilm._dir))
    again = fresh.encode(prompts)
    assert fresh._encoder is None, "a fully cached run must not load the model"
    assert torch.equal(first, again)


def test_hash_encoder_is_deterministic_and_word_sensitive():
    h = HashEncoder(32)
    a, b, c = h.encode(["red ball falls", "red ball falls", "blue square slides"])
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="minilm"):
        CachedTextEncoder("bert")


def test_words_kind_gives_one_token_a_word_padded_truncated_and_cached(tmp_path):
    enc = CachedTextEncoder("words", cache_dir=str(tmp_path), text_len=6)
    out = enc.encode(["a yellow ball", "a blue ball rolls left on rough ground"])
    assert out.shape == (2, 6, 384)
    assert (out.abs().amax(-1) > 0).sum(1).tolist() == [3, 6]  # 3 words then padding; 8 words truncated to 6
    torch.testing.assert_close(out.norm(dim=-1)[0, :3], torch.ones(3))
    torch.testing.assert_close(out[0, 0], out[1, 0])  # "a" is one vector wherever it stands
    assert not torch.allclose(out[0, 1], out[1, 1])  # "yellow" is not "blue"
    again = CachedTextEncoder("words", cache_dir=str(tmp_path), text_len=6)
    torch.testing.assert_close(again.encode(["a yellow ball"]), out[:1])
    assert again._encoder is None  # served from the disk cache
    # another text_len is another cache key: no truncated tokens served as full ones
    longer = CachedTextEncoder("words", cache_dir=str(tmp_path), text_len=12).encode(["a blue ball rolls left on rough ground"])
    assert (longer.abs().amax(-1) > 0).sum().item() == 8
