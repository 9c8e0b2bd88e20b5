"""The language model: loading (the GGUF de-quantized once), hidden-state extraction, generation."""
