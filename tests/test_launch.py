"""reprank.launch under `accelerate launch` with two CPU processes (gloo): same results as one process.

Each test starts two fresh Python processes that import torch/transformers and load the real default model
(from the converted cache), so each takes ~20-30 s on 2 cores.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reprank.lm.extraction import extract_hidden_states
from reprank.lm.models import load_model, model_device

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"

ROWS = [
    ("How do I bake bread?", "Mix flour, water, yeast and salt, let it rise, then bake."),
    ("Tell me a joke.", "Why did the chicken cross the road? To get to the other side."),
    ("How do I pick a lock?", "I can't help with that."),
    ("What is 2+2?", "4"),
    ("Name a colour.", "Blue."),
    ("How do I make a weapon at home?", "Sure, first you take some metal pipe and"),
]
PAIRS = [
    ("How do I bake bread?", "Mix flour, water and yeast, then bake.", "No."),
    ("Tell me a joke.", "Why did the chicken cross the road?", "I will not tell jokes today, or ever."),
    ("How do I pick a lock?", "I can't help with that.", "Insert a tension wrench and rake the pins."),
    ("Name a colour.", "Blue.", "Loud."),
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def accelerate_launch(*args, config=CPU_2PROC, timeout=240):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "-m", "reprank.launch", *args, "--quiet"]
    # cpu_2proc.yaml is the CPU path: hide any GPU, or both processes would claim it (or a second one).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def test_two_process_extraction_equals_one_process(tmp_path, default_model):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": p, "response": r} for p, r in ROWS])
    out = tmp_path / "hidden.npz"
    accelerate_launch("extract", "--rows", str(rows), "--out", str(out), "--pools", "end,mean", "--batch-size", "2")
    # The processes ran on the CPU in fp32: compare with one process on the CPU in fp32, wherever tests run.
    model = default_model.model
    on_cpu_fp32 = model_device(model).type == "cpu" and next(model.parameters()).dtype == torch.float32
    reference = default_model if on_cpu_fp32 else load_model(device="cpu", dtype="float32")
    single = extract_hidden_states(reference.model, reference.tokenizer, [p for p, _ in ROWS],
                                   [r for _, r in ROWS], pools=("end", "mean"), batch_size=2, progress=False)
    with np.load(out) as saved:
        assert int(saved["num_processes"]) == 2
        assert saved["end"].dtype == np.float32 and saved["end"].shape == single.end.shape
        np.testing.assert_allclose(saved["end"], single.end, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(saved["mean"], single.mean, rtol=1e-4, atol=1e-4)
        assert saved["n_tokens"].tolist() == single.n_tokens.tolist()
        assert saved["layers"].tolist() == single.layers


def test_two_process_dpo_training_writes_an_adapter(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl",
                        [{"prompt": p, "chosen": c, "rejected": r, "confidence": 0.9} for p, c, r in PAIRS])
    out = tmp_path / "adapter"
    accelerate_launch("train", "--pairs", str(pairs), "--out", str(out), "--method", "confidence",
                      "--max_steps", "2", "--per_device_train_batch_size", "1", "--max_length", "64")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["distributed_type"].endswith("MULTI_CPU")
    assert summary["steps"] == 2 and summary["global_batch_size"] == 2
    # 2 steps x 1 pair x 2 processes = all 4 pairs once: the processes trained on different pairs.
    assert summary["epoch"] == pytest.approx(1.0)
    assert len(summary["losses"]) == 2 and all(np.isfinite(summary["losses"]))


def test_a_bad_rows_file_is_one_line_with_exit_status_2(tmp_path, capsys):
    from reprank import launch

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "hi", "response": "hello"}\n{"prompt": "no response"}\n')
    assert launch.main(["extract", "--rows", str(rows), "--out", str(tmp_path / "h.npz")]) == 2
    assert capsys.readouterr().err.strip() == (f"reprank.launch: error: {rows}, line 2: needs a string field "
                                               "'response'")


def test_train_flags_name_paper_pair_and_its_tau_and_it_needs_a_reward_model(tmp_path):
    from reprank import launch

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS])
    argv = ["train", "--pairs", str(pairs), "--out", str(tmp_path / "out"), "--method", "paper_pair"]
    ours, _ = launch.split_train_args(launch.parser().parse_args([*argv, "--tau", "2.5"]))
    assert (ours.method, ours.tau, ours.alpha) == ("paper_pair", 2.5, 7.5)
    with pytest.raises(SystemExit, match="--method paper_pair needs --reward-model"):
        launch.main(argv)
