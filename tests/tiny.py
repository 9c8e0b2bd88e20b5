"""A tiny random Llama with the default model's tokenizer: what the unit tests train and measure on (seconds, not
minutes; the real model's behaviour is the notebook tests' job)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config)
