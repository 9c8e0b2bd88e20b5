"""The arms of a comparison: each trained from a fresh copy of the model on one budget and judged on one set of prompts.

Notebook 04 trains `dpo`, `paper` and the matched-strength arms through :class:`Arms`; notebook 06 the baselines and
ablations, after reading 04's judged answers back (:meth:`Arms.from_answer_rows`), so every comparison of the two
notebooks pairs answers to the same prompts by the same judges.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reprank.lm.models import load_model
from reprank.measure import compute, evaluate
from reprank.method import align

TRAINER_OPTIONS = ("epsilon", "confidence_schedule", "reward_trainable", "score_offset")  # not DPOConfig fields
BENIGN = "benign"  # the label of the benign prompts in an answer table's ``prompts`` column
SHOWN_RATES = {"safe_rate": "safe", "over_refusal_rate": "over-refusal", "safe_rate_classifier": "safe (classifier)",
               "over_refusal_rate_classifier": "over-refusal (classifier)"}


@dataclass
class Arms:
    """Judged answers (``answers``), rates with intervals (``results``), training logs (``histories``) and the
    main method's path judged during training (``curves``) of every arm, keyed by the arm's name.
    ``eval_sets`` maps a source's name to its harmful prompts (the first is the training sources' split);
    ``interval(successes, n)`` gives each rate's interval (notebook 04 passes the student's Wilson interval)."""

    tokenizer: object
    eval_sets: dict[str, list[str]]
    eval_benign: list[str]
    classifier: evaluate.RefusalClassifier
    max_new_tokens: int
    seed: int
    interval: Callable = evaluate.wilson_interval
    results: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    curves: list = field(default_factory=list)

    @property
    def first_set(self) -> str:
        return next(iter(self.eval_sets))

    @property
    def eval_harmful(self) -> list[str]:
        return [prompt for prompts in self.eval_sets.values() for prompt in prompts]

    def record(self, name: str, judged: pd.DataFrame) -> None:
        """Keep one arm's judged answers, and its rates on each harmful set (the benign prompts are shared)."""
        judged["prompts"] = judged.prompt.map({**{p: s for s, ps in self.eval_sets.items() for p in ps},
                                              **{p: BENIGN for p in self.eval_benign}})
        self.answers[name] = judged
        self.results[name] = {s: evaluate.summarize(judged[judged.prompts.isin([s, BENIGN])], interval=self.interval)
                              for s in self.eval_sets}
        print(f"{name:>24}: " + " | ".join(f"safe ({s}) {evaluate.rate_with_interval(r, 'safe_rate')}"
                                           for s, r in self.results[name].items())
              + f" | over-refusal {evaluate.rate_with_interval(self.results[name][self.first_set], 'over_refusal_rate')}")

    def judge(self, name: str, model) -> None:
        """Greedy answers of ``model`` to every evaluation prompt, judged and recorded as arm ``name``."""
        judged, _ = evaluate.evaluate_model(model, self.tokenizer, self.eval_harmful, self.eval_benign,
                                            classifier=self.classifier, max_new_tokens=self.max_new_tokens,
                                            seed=self.seed)
        self.record(name, judged)

    def train(self, name: str, method: str, pairs, settings: dict, *, model_id: str, reward_model, alpha: float,
              run_dir: Path, ledger: compute.ComputeLedger, eval_at: Sequence[int] = (),
              record_at: Sequence[int] = ()):
        """Train arm ``name`` from a fresh model with ``method`` on ``pairs`` and judge it; returns the policy (its
        adapter merged into the weights).

        ``settings``: DPOConfig fields (``learning_rate``, ``beta``, ``max_steps``, ...) plus, optionally, ``alpha``
        and the trainer's own options (:data:`TRAINER_OPTIONS`). ``eval_at``: judge the first source and the benign
        prompts after those steps (the path in ``curves``); ``record_at``: judge everything after those steps, each
        kept as arm ``name@step``. The adapter is saved under ``run_dir/adapters/``; training is costed in ``ledger``.
        """
        settings = dict(settings)
        run_alpha = settings.pop("alpha", alpha)
        options = {key: settings.pop(key) for key in TRAINER_OPTIONS if key in settings}
        batch = settings["per_device_train_batch_size"]
        model = load_model(model_id).model  # a fresh copy: training changes the model in place
        config = align.dpo_config(run_dir / "checkpoints" / name, seed=self.seed, **settings)
        tracker = evaluate.EvaluateDuringTraining(self.tokenizer, self.eval_sets[self.first_set], self.eval_benign,
                                                  classifier=self.classifier, at_steps=eval_at,
                                                  max_new_tokens=self.max_new_tokens, seed=self.seed)
        recorder = evaluate.EvaluateDuringTraining(self.tokenizer, self.eval_harmful, self.eval_benign,
                                                   classifier=self.classifier, at_steps=record_at,
                                                   max_new_tokens=self.max_new_tokens, seed=self.seed)
        flops = compute.dpo_training_flops(model, align.mean_pair_tokens(self.tokenizer, pairs, settings["max_length"]),
                                           settings["max_steps"], batch)
        with ledger.timed(f"{name}: training", items=settings["max_steps"] * batch, flops=flops):
            trainer, policy = align.train_dpo(model, self.tokenizer, pairs, method=method, config=config,
                                              reward_model=reward_model, alpha=run_alpha, **options,
                                              callbacks=[tracker.callback, recorder.callback])
        policy.save_pretrained(run_dir / "adapters" / name.replace(": ", "_"))
        self.histories[name] = align.history_frame(trainer)
        self.curves.extend({"run": name, **row} for row in tracker.summaries)
        for step, judged in recorder.answers.items():
            self.record(f"{name}@{step}", judged)
        # Judged with the adapter merged into the weights: the same answers, 1.2x faster on a CPU than through PEFT's
        # extra LoRA matmuls (benchmarks/bench_judging.py).
        policy = policy.merge_and_unload().eval()
        self.judge(name, policy)
        return policy

    def rates(self) -> pd.DataFrame:
        """Every arm's rates and intervals (``evaluate.summarize``'s columns), one row per (run, harmful prompts)."""
        return pd.concat({name: pd.DataFrame(sets).T for name, sets in self.results.items()}, names=["run", "prompts"])

    def rates_shown(self) -> pd.DataFrame:
        """The table a reader looks at: each judge's safe and over-refusal rate as "rate [interval], n"."""
        table = self.rates()
        return pd.DataFrame({label: [evaluate.rate_with_interval(row, key) for _, row in table.iterrows()]
                             for key, label in SHOWN_RATES.items()}, index=table.index)

    def plot_tradeoff(self, ax, source: str) -> None:
        """Each arm at (over-refusal, safe) on ``source``'s harmful prompts (phrase judge), with both intervals, over
        a shaded target corner (safe >= 70%, over-refusal <= 15%)."""
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.03, 0.7), 0.18, 0.33, color="tab:green", alpha=0.12, label="target"))
        for name, row in self.rates().xs(source, level="prompts").iterrows():
            ax.errorbar(row.over_refusal_rate, row.safe_rate, fmt="o", capsize=3, label=name,
                        xerr=[[row.over_refusal_rate - row.over_refusal_rate_low],
                              [row.over_refusal_rate_high - row.over_refusal_rate]],
                        yerr=[[row.safe_rate - row.safe_rate_low], [row.safe_rate_high - row.safe_rate]])
        ax.set(xlabel="over-refusal of benign prompts (phrase judge)", title=f"harmful prompts: {source}",
               xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))

    def answer_rows(self) -> pd.DataFrame:
        """Every arm's judged answers as one table, one row per (arm, prompt): what notebook 04 saves."""
        return pd.concat([judged.assign(arm=name) for name, judged in self.answers.items()], ignore_index=True)

    @classmethod
    def from_answer_rows(cls, rows: pd.DataFrame, arms: Sequence[str], **kwargs) -> "Arms":
        """The comparison an earlier notebook judged, read back from its :meth:`answer_rows`: its evaluation prompts
        (in their order) and the listed arms' answers, recorded again so their rates use this ``interval``."""
        missing = sorted(set(arms) - set(rows.arm))
        if missing:
            raise ValueError(f"no judged answers of {missing} (arms there: {sorted(set(rows.arm))})")
        first = rows[rows.arm == rows.arm.iloc[0]]
        sources = [s for s in dict.fromkeys(first.prompts) if s != BENIGN]
        eval_sets = {s: list(first.prompt[first.prompts == s]) for s in sources}
        loaded = cls(eval_sets=eval_sets, eval_benign=list(first.prompt[first.prompts == BENIGN]), **kwargs)
        for name in arms:
            loaded.record(name, rows[rows.arm == name].drop(columns=["arm"]).reset_index(drop=True))
        return loaded
