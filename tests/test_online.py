"""The online baseline (reprank.method.online): the real model end to end, and on a tiny random Llama what it shares
with an offline run of the same length (reference, optimizer, LR schedule)."""

import copy
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from reprank.measure import compute
from reprank.method import align, online
from reprank.lm.generation import SamplingConfig
from reprank.lm.models import load_model, model_device
from reprank.method.reward import HybridRewardModel


def test_one_online_round_samples_scores_trains_and_counts_compute(tmp_path):
    loaded = load_model()  # a fresh copy: training changes the model in place
    config = loaded.model.config
    torch.manual_seed(0)
    rm = HybridRewardModel(config.num_hidden_layers, config.hidden_size)
    with torch.no_grad():
        rm.probe_weight.normal_(std=0.05)
    result = online.online_dpo(
        loaded.model, loaded.tokenizer, ["Name a color.", "Name an animal.", "Say hello."], rm,
        rounds=2, prompts_per_round=2, steps_per_round=1,
        sampling=SamplingConfig(max_new_tokens=6, do_sample=True, num_return_sequences=2),
        config=align.dpo_config(tmp_path, max_length=48, per_device_train_batch_size=2),
        references=["I can't help with that."], references_for=["Name a color."], progress=False)
    assert len(result.rounds) == 2 and (result.rounds.pairs >= 1).all()
    stages = set(result.ledger.to_frame().stage)
    assert {"online sampling", "online scoring", "online training"} <= stages
    assert result.ledger.total("online sampling") > 0
    assert result.ledger.total("online training") > result.ledger.total("online scoring")  # 4x a forward per token
    assert hasattr(result.policy, "peft_config")


class _Recorder(TrainerCallback):
    """What a trainer's run looks like from inside: its optimizer, the LR of each step, the optimizer state."""

    def __init__(self, model):
        self.model, self.lrs = model, []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps it for the run
        self.adapters = sorted(self.model.peft_config)
        trained = {id(p) for p in self.model.parameters() if p.requires_grad}
        self.trains_live_parameters = trained == {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self.hyperparameters = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.state_at_begin = _optimizer_state(self.optimizer)

    def on_step_begin(self, args, state, control, **kwargs):
        self.lrs.append(self.optimizer.param_groups[0]["lr"])  # the LR this step's update uses

    def on_train_end(self, args, state, control, **kwargs):
        self.state_at_end = _optimizer_state(self.optimizer)


def _optimizer_state(optimizer):
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return [(float(optimizer.state[p]["step"]), optimizer.state[p]["exp_avg"].clone()) if p in optimizer.state
            else None for p in params]


def _tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """2 online rounds x 2 steps on a tiny random Llama, each round's trainer recorded; and the same config run
    offline for 4 steps. lr 1e-2 so that one round moves the policy well clear of the untuned model; an NLL term
    and weight decay (not reprank's defaults) to see that the run's config reaches every round."""
    from transformers import AutoTokenizer

    from reprank.lm.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path())
    model = _tiny_llama(tokenizer)
    untuned = copy.deepcopy(model)
    rm = HybridRewardModel(2, 32)
    with torch.no_grad():
        rm.probe_weight.normal_(std=0.5)
    config = align.dpo_config(tmp_path_factory.mktemp("online"), max_length=64, per_device_train_batch_size=2,
                              learning_rate=1e-2, nll_weight=0.5, weight_decay=0.01)
    rounds, make_trainer = [], align.make_trainer

    def recording_make_trainer(policy, *args, **kwargs):
        trainer = make_trainer(policy, *args, **kwargs)
        rounds.append(SimpleNamespace(trainer=trainer, recorder=_Recorder(trainer.model)))
        trainer.add_callback(rounds[-1].recorder)
        return trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(align, "make_trainer", recording_make_trainer)
        result = online.online_dpo(
            model, tokenizer, ["Name a color.", "Name an animal.", "Say hello."], rm,
            rounds=2, prompts_per_round=2, steps_per_round=2,
            sampling=SamplingConfig(max_new_tokens=4, do_sample=True, num_return_sequences=2),
            config=config, references=["I can't help with that."], references_for=["Name a color.", "Say hello."],
            progress=False)
    offline_config = copy.deepcopy(config)
    offline_config.max_steps, offline_config.output_dir = 4, str(tmp_path_factory.mktemp("offline"))
    pairs = Dataset.from_dict({"prompt": ["Hi?", "Why?"], "chosen": ["Hello.", "Because."], "rejected": ["No.", "?"]})
    offline = make_trainer(_tiny_llama(tokenizer), tokenizer, pairs, method="dpo", config=offline_config)
    offline_recorder = _Recorder(offline.model)
    offline.add_callback(offline_recorder)
    offline.train()
    return SimpleNamespace(rounds=rounds, policy=result.policy, untuned=untuned, offline=offline_recorder)


def _sequence_logps(model, batch):
    """Summed log-probs of each row's completion tokens, from full-vocabulary logits (independently of TRL)."""
    ids, completion = batch["input_ids"], batch["completion_mask"][:, 1:]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1]
    token = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (token * completion).sum(1)


def test_every_rounds_reference_is_the_untuned_model(tiny_run):
    assert len(tiny_run.rounds) == 2
    trainer = tiny_run.rounds[1].trainer
    assert tiny_run.rounds[1].recorder.adapters == ["default"]  # no frozen copy of the adapter as the reference
    assert trainer.precompute_ref_logps  # 2 steps x 2 pairs >= the round's pairs: the reference was precomputed
    device = model_device(trainer.model)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    batch = {k: v.to(device) for k, v in batch.items()}
    untuned_chosen, untuned_rejected = _sequence_logps(tiny_run.untuned.to(device), batch).chunk(2)
    tight = {"rtol": 0, "atol": 1e-5}
    # What round 2 trained against (precomputed before its first step) ...
    torch.testing.assert_close(torch.tensor(trainer.train_dataset["ref_chosen_logps"]).to(device), untuned_chosen,
                               **tight)
    torch.testing.assert_close(torch.tensor(trainer.train_dataset["ref_rejected_logps"]).to(device),
                               untuned_rejected, **tight)
    # ... and what TRL's reference forward gives now (the path taken when it is not precomputed).
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    torch.testing.assert_close(ref_chosen, untuned_chosen, **tight)
    torch.testing.assert_close(ref_rejected, untuned_rejected, **tight)
    # Not vacuous: the policy itself has moved away from the untuned model.
    assert (_sequence_logps(tiny_run.policy, batch) - torch.cat([untuned_chosen, untuned_rejected])).abs().max() > 1e-3


def test_the_rounds_continue_one_lr_schedule_as_an_offline_run_of_the_total_steps(tiny_run):
    online_lrs = [lr for r in tiny_run.rounds for lr in r.recorder.lrs]
    assert len(online_lrs) == 4 and online_lrs == tiny_run.offline.lrs  # round 2, step 1 included: no restart
    assert online_lrs[2] < online_lrs[0]
    assert tiny_run.rounds[0].recorder.hyperparameters == tiny_run.offline.hyperparameters  # same optimizer settings
    assert type(tiny_run.rounds[0].recorder.optimizer) is type(tiny_run.offline.optimizer)


def test_one_optimizer_and_its_state_carry_across_rounds(tiny_run):
    first, second = (r.recorder for r in tiny_run.rounds)
    assert second.optimizer is first.optimizer
    assert first.trains_live_parameters and second.trains_live_parameters  # its params are the adapter's own
    assert all(s is None for s in first.state_at_begin)
    assert len(second.state_at_begin) == len(first.state_at_end) > 0
    for carried, left in zip(second.state_at_begin, first.state_at_end):  # round 2 starts where round 1 ended
        assert carried[0] == left[0] == 2
        torch.testing.assert_close(carried[1], left[1], rtol=0, atol=0)
    assert any(left[1].abs().max() > 0 for left in first.state_at_end)
    assert all(s[0] == 4 for s in second.state_at_end)


def test_each_round_trains_with_the_runs_loss_and_settings(tiny_run):
    for r in tiny_run.rounds:
        trainer = r.trainer
        assert trainer.loss_types == ["sigmoid", "sft"] and trainer.loss_weights == [1.0, 0.5]  # the NLL term
        assert trainer.args.weight_decay == 0.01 and trainer.args.learning_rate == 1e-2
        assert trainer.args.per_device_train_batch_size == 2 and trainer.args.max_steps == 2
