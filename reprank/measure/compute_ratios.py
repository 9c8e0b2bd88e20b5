"""Three labelled compute ratios of online sampling against re-ranking, and their projection to a configuration.

The paper's abstract says re-ranking needs "about 300x" less compute than online sampling and does not say
what is counted. Under ``compute``'s FLOPs model the answer depends on what is counted, so each ratio here is
a pure function of explicit sizes (a ``compute.ModelSize`` and token counts; no model is loaded):

(a) ``total_pipeline``: everything, online (every round: sample, score and train on that round's prompts)
    against re-ranking (sample and score all prompts once, then train the same steps). Measured seconds:
    ``total_pipeline_measured``.
(b) ``marginal_per_step``: a fresh preference signal for one training step: online samples and scores the
    step's batch; re-ranking with the paper's method applies the RM head to the hidden states the training
    forward already has, for the batch's 2B responses.
(c) ``per_candidate``: one candidate of T new tokens: sampling it against scoring it with a forward, and
    against the RM head alone on hidden states that exist.

Computed with ``project_to_config`` (checked in ``tests/test_compute_ratios.py``), none of them is ~300x
in FLOPs for either preset:
- (a) is 0.50x for the authors' counts (online samples only the 1,600 prompts its 100 steps x 16 train on,
  re-ranking all 4,000) and 1.22x for ours; as rounds grow it rises towards ``total_pipeline_limit``,
  1 + B k (candidate) / train(B): 2.97x for the authors (k = 8, T = 256), 1.84x for ours (k = 4, T = 48).
- (b) is ~1.3e8x for the authors and ~2.4e6x for ours: far past 300, because the RM head costs less per
  response (2.6e5 FLOPs on Llama-2-7B, 3.6e4 on ours) than one sampled token does (~1.3e10, ~2.7e8).
- (c) is ~1.0x (authors) and ~1.1x (ours) against a scoring forward; ~1.6e7x and ~6e5x against the RM head.
The nearest reading of "about 300x" is latency, not FLOPs: sampling T = 256 tokens takes 256 sequential
passes (a prefill, then T - 1 decode steps) where scoring takes one.

Sizes: ``gen(P, T)`` is ``compute.generation_flops`` (prefill over P prompt tokens, then T - 1 decode
steps with the vocabulary head); ``fwd(n)`` is ``compute.forward_flops`` over n tokens without the head (the
hidden-state extraction that scoring runs); ``rm`` is ``compute.rm_flops(L, d) = 2Ld + 2L^2 + 4L``;
``train(B)`` is ``compute.dpo_training_flops`` for one step of B pairs of P + T tokens (2 sequences a pair,
policy forward and backward (3x) plus a reference forward: 8 forwards with the head).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from reprank.base import defaults

from reprank.measure.compute import ComputeLedger, ModelSize, dpo_training_flops, forward_flops, generation_flops, rm_flops

COLUMNS = ["config", "ratio", "what it counts", "online FLOPs", "re-ranking FLOPs", "online / re-ranking"]

FORMULAS = {
    "(a) total pipeline": "online = R s B k (gen(P,T) + fwd(P+T) + rm) + R s train(B);  "
                          "re-ranking = n k (gen(P,T) + fwd(P+T) + rm) + R s train(B)",
    "(a) total pipeline, rounds -> inf": "online / re-ranking -> "
                                         "(B k (gen(P,T) + fwd(P+T) + rm) + train(B)) / train(B)",
    "(b) marginal per training step": "online = B k (gen(P,T) + fwd(P+T) + rm);  re-ranking = 2 B rm,  "
                                      "rm = 2 L d + 2 L^2 + 4 L",
    "(c) per candidate, vs scoring forward": "online = gen(P,T);  re-ranking = fwd(P+T) + rm",
    "(c) per candidate, vs RM head alone": "online = gen(P,T);  re-ranking = rm",
}

# The authors' setting (arXiv 2503.10093), as assumed here: the paper gives the model, k and T; the rest are
# our reading of a typical run and are named so that a reader can change them.
LLAMA2_7B = ModelSize(n_params=6_476_271_616, n_layers=32, d_model=4096, vocab=32_000)  # 6.74e9 with both embeddings
AUTHORS_PROMPTS = 4_000  # prompts re-ranked once
AUTHORS_SAMPLES_PER_PROMPT = 8
AUTHORS_NEW_TOKENS = 256
AUTHORS_PROMPT_TOKENS = 64  # templated prompt, mean
AUTHORS_STEPS, AUTHORS_BATCH = 100, 16
AUTHORS_ONLINE_ROUNDS = AUTHORS_STEPS  # online = fresh samples every step for that step's batch

# Our default CPU run: profiles/cpu.yaml and reprank.base.defaults (a test checks the profile still agrees).
SMOLLM2_135M = ModelSize(n_params=106_203_456, n_layers=30, d_model=576, vocab=49_152)  # 1.35e8 with embeddings
OURS_PROMPTS = 48 + 48  # n_rerank_harmful + n_rerank_benign
OURS_SAMPLES_PER_PROMPT = defaults.SAMPLES_PER_PROMPT
OURS_NEW_TOKENS = defaults.SAMPLE_MAX_NEW_TOKENS
OURS_PROMPT_TOKENS = 47  # mean chat-templated length of those 96 prompts on SmolLM2's tokenizer (38-106)
OURS_STEPS, OURS_BATCH = defaults.MAX_STEPS, defaults.BATCH_SIZE
OURS_ONLINE_ROUNDS = 4  # online_rounds of profiles/sweeps/cpu-baselines.yaml: 10 steps a round, as notebook 04 splits them

# Ledger stage names written by notebooks 03 and 04.
DATA_STAGES = ("sampling (once)", "scoring")
ONLINE_STAGES = ("online: sampling", "online: scoring", "online: training")


@dataclass(frozen=True)
class Ratio:
    """One labelled ratio: what online and re-ranking cost under it, in FLOPs (in seconds for
    ``total_pipeline_measured(by="seconds")``, whose ``row`` still files them under the FLOPs columns)."""

    name: str
    counts: str
    online: float
    reranking: float
    formula: str = ""

    @property
    def value(self) -> float:
        return self.online / self.reranking

    def row(self, config: str = "") -> dict:
        return dict(zip(COLUMNS, [config, self.name, self.counts, self.online, self.reranking, self.value]))


def candidate_flops(model: ModelSize, prompt_tokens: float, new_tokens: int, rm_layers: int | None = None) -> float:
    """FLOPs to sample one candidate and score it: ``gen(P, T) + fwd(P + T) + rm``."""
    rm = rm_flops(model.n_layers if rm_layers is None else rm_layers, model.d_model)
    sample = generation_flops(model, prompt_tokens, new_tokens)
    return sample + scoring_forward_flops(model, prompt_tokens, new_tokens) + rm


def scoring_forward_flops(model: ModelSize, prompt_tokens: float, new_tokens: int) -> float:
    """``fwd(P + T)``: one body forward (no vocabulary head) over the prompt and the response."""
    return forward_flops(model, prompt_tokens + new_tokens, include_head=False)


def _train_step(model: ModelSize, batch: int, prompt_tokens: float, new_tokens: int,
                sequence_tokens: float | None) -> float:
    """``train(B)``: one DPO step of B pairs of ``sequence_tokens`` tokens (P + T when None)."""
    tokens = prompt_tokens + new_tokens if sequence_tokens is None else sequence_tokens
    return dpo_training_flops(model, tokens, steps=1, pairs_per_step=batch)


def total_pipeline(model: ModelSize, *, n_prompts: int, samples_per_prompt: int, new_tokens: int,
                   prompt_tokens: float, rounds: int, steps_per_round: int, batch: int,
                   rm_layers: int | None = None, sequence_tokens: float | None = None) -> Ratio:
    """(a) Total pipeline FLOPs, online against one re-ranking pass, both training R s steps of B pairs.

    online = R s B k (gen(P,T) + fwd(P+T) + rm) + R s train(B): every round samples k answers of T tokens to
    the s B prompts its s steps train on, scores each, trains. re-ranking = n k (gen(P,T) + fwd(P+T) + rm)
    + R s train(B): all n prompts sampled and scored once. Training sequences are P + T tokens unless
    ``sequence_tokens`` is given; the RM reads all layers unless ``rm_layers`` is given. At a fixed number of
    steps the ratio does not depend on how they are split into rounds; as rounds grow at s steps each it
    rises towards ``total_pipeline_limit`` (online's data per step over training per step, plus 1).
    """
    steps = rounds * steps_per_round
    candidate = candidate_flops(model, prompt_tokens, new_tokens, rm_layers)
    training = steps * _train_step(model, batch, prompt_tokens, new_tokens, sequence_tokens)
    return Ratio("(a) total pipeline",
                 f"everything: {rounds} online rounds x {steps_per_round} steps x {batch} prompts x "
                 f"{samples_per_prompt} samples vs {n_prompts} prompts x {samples_per_prompt} once; same {steps} steps",
                 steps * batch * samples_per_prompt * candidate + training,
                 n_prompts * samples_per_prompt * candidate + training, FORMULAS["(a) total pipeline"])


def total_pipeline_limit(model: ModelSize, *, samples_per_prompt: int, new_tokens: int, prompt_tokens: float,
                         batch: int, rm_layers: int | None = None, sequence_tokens: float | None = None) -> Ratio:
    """(a) as rounds -> infinity: per training step, online pays B k (gen(P,T) + fwd(P+T) + rm) + train(B)
    and re-ranking train(B), its one-off data cost spread over ever more steps. The bound of (a) at any rounds."""
    data = batch * samples_per_prompt * candidate_flops(model, prompt_tokens, new_tokens, rm_layers)
    training = _train_step(model, batch, prompt_tokens, new_tokens, sequence_tokens)
    return Ratio("(a) total pipeline, rounds -> inf",
                 "per step: data + training vs training (re-ranking's one-off data amortized away)",
                 data + training, training, FORMULAS["(a) total pipeline, rounds -> inf"])


def total_pipeline_measured(data_ledger: ComputeLedger, run_ledger: ComputeLedger, method: str, by: str = "seconds",
                            min_sampling_seconds: float = 1.0) -> Ratio:
    """(a) from two ledgers: online = the run ledger's ``ONLINE_STAGES``; re-ranking = notebook 03's
    ``DATA_STAGES`` (``data_ledger``, e.g. ``ledger_03``) + the run ledger's ``"<method>: training"``.

    ``by`` is "seconds" (measured) or "flops" (estimated). Seconds of a notebook 03 whose samples came from its
    cache (sampling under ``min_sampling_seconds``) are not comparable with online's: that is an error.
    """
    if by == "seconds" and data_ledger.total(DATA_STAGES[0], by="seconds") < min_sampling_seconds:
        raise ValueError(f"{DATA_STAGES[0]!r} took under {min_sampling_seconds} s: its samples came from a cache, "
                         "so its seconds cannot be compared with online's (use by='flops')")
    online = run_ledger.total(ONLINE_STAGES, by=by)
    reranking = data_ledger.total(DATA_STAGES, by=by) + run_ledger.total(f"{method}: training", by=by)
    return Ratio("(a) total pipeline, measured", f"{by}: online sampling + scoring + training vs 03's sampling + "
                 f"scoring + {method} training", online, reranking,
                 f"online = sum {ONLINE_STAGES};  re-ranking = sum {DATA_STAGES} + '{method}: training'")


def marginal_per_step(model: ModelSize, *, samples_per_prompt: int, new_tokens: int, prompt_tokens: float,
                      batch: int, rm_layers: int | None = None) -> Ratio:
    """(b) FLOPs of a fresh preference signal for one training step of B pairs.

    online = B k (gen(P,T) + fwd(P+T) + rm): sample and score the step's prompts. re-ranking (the paper's
    method) = 2 B rm: the RM head on the hidden states the training forward already computed, for the chosen
    and rejected response of each pair; rm = 2 L d + 2 L^2 + 4 L (L = the RM's layers, all by default).
    """
    layers = model.n_layers if rm_layers is None else rm_layers
    return Ratio("(b) marginal per training step",
                 f"a fresh signal for one step: {batch} prompts x {samples_per_prompt} samples sampled + scored vs "
                 f"RM head on {2 * batch} responses' existing hidden states",
                 batch * samples_per_prompt * candidate_flops(model, prompt_tokens, new_tokens, rm_layers),
                 2 * batch * rm_flops(layers, model.d_model), FORMULAS["(b) marginal per training step"])


def per_candidate(model: ModelSize, *, new_tokens: int, prompt_tokens: float,
                  rm_layers: int | None = None) -> tuple[Ratio, Ratio]:
    """(c) FLOPs per candidate of T new tokens: sampling it, gen(P,T), against (1) scoring it with one forward
    over prompt and response, fwd(P+T) + rm, and (2) the RM head alone on hidden states that exist, rm.

    In FLOPs (1) is near 1: a decode step costs about what a scored token does. In latency it is ~T: the T
    tokens take T sequential passes (a prefill and T - 1 decode steps), the scoring forward one.
    """
    rm = rm_flops(model.n_layers if rm_layers is None else rm_layers, model.d_model)
    sample = generation_flops(model, prompt_tokens, new_tokens)
    score = scoring_forward_flops(model, prompt_tokens, new_tokens)
    return (Ratio("(c) per candidate, vs scoring forward", f"sample 1 candidate of {new_tokens} tokens vs one "
                  "forward over prompt + response", sample, score + rm,
                  FORMULAS["(c) per candidate, vs scoring forward"]),
            Ratio("(c) per candidate, vs RM head alone", f"sample 1 candidate of {new_tokens} tokens vs the RM head on "
                  "its existing hidden states", sample, rm, FORMULAS["(c) per candidate, vs RM head alone"]))


@dataclass(frozen=True)
class PipelineConfig:
    """A run's sizes: the model, n prompts re-ranked, k samples of T new tokens to P-token prompts, ``steps``
    of ``batch`` pairs, online split into ``rounds`` (``steps // rounds`` steps each, as notebook 04 does)."""

    label: str
    model: ModelSize
    n_prompts: int
    samples_per_prompt: int
    new_tokens: int
    prompt_tokens: float
    steps: int
    batch: int
    rounds: int
    rm_layers: int | None = None
    sequence_tokens: float | None = None  # training sequence length; P + T when None

    def with_(self, **changes) -> "PipelineConfig":
        return replace(self, **changes)


PRESETS = {
    "authors": PipelineConfig(
        "authors (Llama-2-7B, assumed)", LLAMA2_7B, AUTHORS_PROMPTS, AUTHORS_SAMPLES_PER_PROMPT, AUTHORS_NEW_TOKENS,
        AUTHORS_PROMPT_TOKENS, AUTHORS_STEPS, AUTHORS_BATCH, AUTHORS_ONLINE_ROUNDS),
    "ours": PipelineConfig(
        "ours (SmolLM2-135M, cpu.yaml)", SMOLLM2_135M, OURS_PROMPTS, OURS_SAMPLES_PER_PROMPT, OURS_NEW_TOKENS,
        OURS_PROMPT_TOKENS, OURS_STEPS, OURS_BATCH, OURS_ONLINE_ROUNDS),
}


def ratios_for(config: PipelineConfig) -> list[Ratio]:
    """(a), its limit, (b) and both (c) for ``config``."""
    sizes = dict(samples_per_prompt=config.samples_per_prompt, new_tokens=config.new_tokens,
                 prompt_tokens=config.prompt_tokens, rm_layers=config.rm_layers)
    rounds = min(config.rounds, config.steps)
    return [
        total_pipeline(config.model, n_prompts=config.n_prompts, rounds=rounds, steps_per_round=config.steps // rounds,
                       batch=config.batch, sequence_tokens=config.sequence_tokens, **sizes),
        total_pipeline_limit(config.model, batch=config.batch, sequence_tokens=config.sequence_tokens, **sizes),
        marginal_per_step(config.model, batch=config.batch, **sizes),
        *per_candidate(config.model, new_tokens=config.new_tokens, prompt_tokens=config.prompt_tokens,
                       rm_layers=config.rm_layers),
    ]


def project_to_config(*configs: PipelineConfig | str) -> pd.DataFrame:
    """The ratios of each configuration (a ``PipelineConfig`` or a ``PRESETS`` key; both presets when none is
    given), one row each, columns ``COLUMNS``. ``FORMULAS[row.ratio]`` is the one-line formula of a row."""
    configs = configs or tuple(PRESETS)
    rows = []
    for config in configs:
        config = PRESETS[config] if isinstance(config, str) else config
        rows += [ratio.row(config.label) for ratio in ratios_for(config)]
    return pd.DataFrame(rows, columns=COLUMNS)
