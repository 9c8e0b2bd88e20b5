import torch

from reprank import align, compute, online
from reprank.generation import SamplingConfig
from reprank.models import load_model
from reprank.reward import HybridRewardModel


def test_one_online_round_samples_scores_trains_and_counts_compute(tmp_path):
    loaded = load_model()  # a fresh copy: training changes the model in place
    config = loaded.model.config
    torch.manual_seed(0)
    rm = HybridRewardModel(config.num_hidden_layers, config.hidden_size)
    with torch.no_grad():
        rm.probe_weight.normal_(std=0.05)
    result = online.online_dpo(
        loaded.model, loaded.tokenizer, ["Name a color.", "Name an animal.", "Say hello."], rm,
        rounds=3, prompts_per_round=2, steps_per_round=1,
        sampling=SamplingConfig(max_new_tokens=6, do_sample=True, num_return_sequences=2),
        config=align.dpo_config(tmp_path, max_length=48, per_device_train_batch_size=2),
        references=["I can't help with that."], references_for=["Name a color."], progress=False)
    assert len(result.rounds) == 3 and (result.rounds.pairs >= 1).all()  # 3 rounds: TRL's 'ref' adapter re-made
    stages = set(result.ledger.to_frame().stage)
    assert {"online sampling", "online scoring", "online training"} <= stages
    assert result.ledger.total("online sampling") > 0
    assert result.ledger.total("online training") > result.ledger.total("online scoring")  # 4x a forward per token
    assert hasattr(result.policy, "peft_config")
