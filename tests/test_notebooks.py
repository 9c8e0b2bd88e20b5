"""Each notebook executed end to end with papermill on the real default model, at small size.

The assertions read the notebook's own metrics.json: a notebook that runs but learns nothing fails.
A failed execution keeps the partly executed notebook in the test's temporary folder for inspection.
"""

import pytest

from reprank import cli, runs

pytestmark = pytest.mark.notebook

SMALL = {"n_harmful": 24, "n_benign": 24, "n_human": 160, "max_new_tokens": 32, "max_response_tokens": 48,
         "rm_epochs": 20, "seed": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("run")


def execute(name, run_dir, **overrides):
    notebook = next(nb for nb in cli.list_notebooks() if nb.name.startswith(name))
    cli.execute_series([notebook], {**SMALL, **overrides}, run_dir, progress=False)
    return runs.read_metrics(run_dir)


def test_notebook_01_probes_find_safety(run_dir):
    metrics = execute("01", run_dir)["01_probing"]
    # On held-out prompts, the best layer separates unsafe from safe responses far above chance ...
    assert metrics["probe_best_auroc"] > 0.8
    assert metrics["probe_auroc_human_only_best"] > 0.7
    # ... the embeddings-side first layer knows less than the best layer ...
    assert metrics["probe_auroc_by_layer"]["1"] < metrics["probe_best_auroc"]
    # ... and the hybrid reward model ranks held-out pairs well.
    assert metrics["rm_val_pairwise_accuracy"] > 0.75 and metrics["rm_n_val_pairs"] >= 10
    # The untuned model mostly complies with harmful prompts: the material the later steps need.
    assert metrics["baseline_harmful_refusal_rate"] < 0.5
    for figure in ("01_probe_by_layer", "01_pca_layers", "01_reward_model_training"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    assert (run_dir / metrics["rm_path"]).is_file()
    assert (run_dir / "01_probing_safety_representations.ipynb").is_file()
