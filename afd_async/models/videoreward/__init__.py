"""VideoReward (Qwen2-VL + LoRA + reward head) discriminator and its checkpoint loaders."""
