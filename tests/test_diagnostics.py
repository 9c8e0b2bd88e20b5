"""benchmarks/diagnose_harmful_ranking.py's variance split, on hand-made reward tables."""

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def diagnose(benchmark_script):
    return benchmark_script("diagnose_harmful_ranking")


def test_rewards_that_vary_by_prompt_only_are_all_the_prompts_share(diagnose):
    grid = pd.DataFrame([[1.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    assert diagnose.variance_shares(grid) == pytest.approx({"prompt": 1.0, "template": 0.0, "rest": 0.0})


def test_an_additive_table_splits_by_hand(diagnose):
    # rows 0/2 (+-1 around 1), columns -1/0/+1: total SS = 3*2*1 + 2*(1+0+1) = 10; prompt 6/10, template 4/10
    grid = pd.DataFrame([[-1.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    assert diagnose.variance_shares(grid) == pytest.approx({"prompt": 0.6, "template": 0.4, "rest": 0.0})


def test_an_interaction_is_neither_part(diagnose):
    grid = pd.DataFrame([[1.0, -1.0], [-1.0, 1.0]])
    assert diagnose.variance_shares(grid) == pytest.approx({"prompt": 0.0, "template": 0.0, "rest": 1.0})
