"""The paper's method: the hybrid reward model, label confidence, re-ranking, the conservative DPO trainer."""
