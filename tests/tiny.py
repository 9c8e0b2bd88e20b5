"""A tiny random Llama with the default model's tokenizer: what the unit tests train and measure on (seconds, not
minutes; the real model's behaviour is the notebook tests' job)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config)


def perturb_lora(model, seed=1, scale=0.5):
    """LoRA B starts at zero (policy == reference, z == 0): give it random values so z is not trivial and the
    policy moves away from the untuned model (``scale = 0`` leaves it there)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(scale * torch.randn(p.shape, generator=generator))
