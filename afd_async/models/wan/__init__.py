"""Real-scale causal Wan2.1 student: block-causal transformer, KV cache, loaders, LoRA policies."""
