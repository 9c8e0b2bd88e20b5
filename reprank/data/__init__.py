"""Data: the prompt sources read from PyPI wheels, pairs, deduplication, the refusal judges, the datasheet."""
