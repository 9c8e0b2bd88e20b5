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


def test_each_rounds_reference_is_the_previous_rounds_policy(tmp_path, monkeypatch):
    """online_dpo's reference handling, as the code does it today, on a tiny random Llama (2 rounds, 1 step each).

    Round 0 gets the plain model: TRL wraps it in a new LoRA adapter and its reference is the base model
    (adapter disabled; no 'ref' adapter). Round k > 0 gets the PeftModel: TRL adds a frozen 'ref' adapter,
    a copy of the adapter as the round starts, i.e. the reference is the previous round's final policy.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reprank.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    rm = HybridRewardModel(2, 32)
    with torch.no_grad():
        rm.probe_weight.normal_(std=0.5)

    def adapter(peft_model, name):
        return {n.replace(f".{name}.", "."): p.detach().clone() for n, p in peft_model.named_parameters()
                if "lora_" in n and f".{name}." in n}

    rounds = []
    train_dpo = align.train_dpo

    def recording_train_dpo(policy, *args, **kwargs):
        given_peft = isinstance(policy, PeftModel)  # before training: PEFT injects its layers in place
        trainer, trained = train_dpo(policy, *args, **kwargs)
        rounds.append({"given_peft": given_peft, "adapters": sorted(trained.peft_config),
                       "default": adapter(trained, "default"), "ref": adapter(trained, "ref"),
                       "ref_trainable": any(p.requires_grad for n, p in trained.named_parameters() if ".ref." in n)})
        return trainer, trained

    monkeypatch.setattr(align, "train_dpo", recording_train_dpo)
    online.online_dpo(
        model, tokenizer, ["Name a color.", "Name an animal.", "Say hello."], rm,
        rounds=2, prompts_per_round=2, steps_per_round=1,
        sampling=SamplingConfig(max_new_tokens=4, do_sample=True, num_return_sequences=2),
        config=align.dpo_config(tmp_path, max_length=64, per_device_train_batch_size=2),
        references=["I can't help with that."], references_for=["Name a color.", "Say hello."], progress=False)
    assert len(rounds) == 2
    first, second = rounds
    assert not first["given_peft"] and first["adapters"] == ["default"]  # round 0: reference = base model
    assert second["given_peft"] and second["adapters"] == ["default", "ref"]
    assert second["ref"].keys() == first["default"].keys()
    for name, weight in second["ref"].items():  # round 1's reference = round 0's final policy, exactly
        torch.testing.assert_close(weight, first["default"][name], rtol=0, atol=0)
    assert not second["ref_trainable"]
    assert any(not torch.equal(second["default"][n], first["default"][n]) for n in first["default"])  # it trained
